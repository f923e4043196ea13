import time

import pytest

from samiam.errors import LabelConfigError
from samiam.labelstudio.config import EXAMPLE_CONFIG, MAX_CONFIG_CHARS, BrushConfig, parse_label_config


def test_example_config_parses():
    assert parse_label_config(EXAMPLE_CONFIG) == BrushConfig(
        from_name="tag", to_name="image", value_key="image", labels=("Material 1", "Material 2"))


def test_first_brushlabels_bound_to_an_image_wins_and_labels_keep_config_order():
    xml = """<View>
      <Text name="caption" value="$text"/>
      <BrushLabels name="on_text" toName="caption"><Label value="X"/></BrushLabels>
      <Image name="em" value="$micrograph"/>
      <RectangleLabels name="boxes" toName="em"><Label value="Box"/></RectangleLabels>
      <BrushLabels name="phases" toName="caption,em">
        <Label value="Zeta"/><Label value="Alpha" alias="alpha-short"/><Label value="Mu"/>
      </BrushLabels>
      <BrushLabels name="second" toName="em"><Label value="Other"/></BrushLabels>
    </View>"""
    assert parse_label_config(xml) == BrushConfig(
        from_name="phases", to_name="em", value_key="micrograph", labels=("Zeta", "alpha-short", "Mu"))


def _view(*tags: str) -> str:
    return "<View>" + "".join(tags) + "</View>"


IMAGE = "<Image name='i' value='$image'/>"
LABEL = "<Label value='A'/>"


@pytest.mark.parametrize("xml, says", [
    ("", "empty"),
    ("<View><Image name='i' value='$image'/>", "cannot parse"),
    ("<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><View>&e;</View>", "cannot parse"),
    (_view(IMAGE, f"<RectangleLabels name='r' toName='i'>{LABEL}</RectangleLabels>"), "no <BrushLabels>"),
    (_view("<Text name='t' value='$text'/>", f"<BrushLabels name='b' toName='t'>{LABEL}</BrushLabels>"),
     "'b' -> t"),
    (_view(IMAGE, f"<BrushLabels name='b' toName='missing'>{LABEL}</BrushLabels>"), "'b' -> missing"),
    (_view("<Image name='i' valueList='$images'/>", f"<BrushLabels name='b' toName='i'>{LABEL}</BrushLabels>"),
     "<Image value="),
    (_view(IMAGE, "<BrushLabels name='b' toName='i'></BrushLabels>"), "has no <Label>"),
])
def test_unusable_configs_are_refused_with_an_example(xml, says):
    with pytest.raises(LabelConfigError) as info:
        parse_label_config(xml)
    assert says in str(info.value)
    assert EXAMPLE_CONFIG in str(info.value)
    assert info.value.http_status == 400


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE View [<!ENTITY l0 "ha">'
                  + "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
                  + f']><View>{IMAGE}<BrushLabels name="b" toName="i"><Label value="&l9;"/></BrushLabels></View>')
QUADRATIC_BLOWUP = (f'<!DOCTYPE View [<!ENTITY a "{"x" * 50_000}">]><View>{IMAGE}<BrushLabels name="b" toName="i">'
                    f'<Label value="{"&a;" * 10_000}"/></BrushLabels></View>')


@pytest.mark.parametrize("xml", [BILLION_LAUGHS, QUADRATIC_BLOWUP,
                                 f"<!DOCTYPE View SYSTEM 'http://127.0.0.1:9/dtd'>{EXAMPLE_CONFIG}",
                                 f"<!DOCTYPE View [<!ENTITY m 'Material 3'>]>{EXAMPLE_CONFIG}"],
                         ids=["billion-laughs", "quadratic-blowup", "external-dtd", "harmless-entity"])
def test_configs_with_a_document_type_are_refused_at_once(xml):
    started = time.perf_counter()
    with pytest.raises(LabelConfigError, match="cannot parse it"):
        parse_label_config(xml)
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("config, says", [(None, "empty"), (["<View/>"], "not list"), (7, "not int"),
                                          ({"View": {}}, "not dict"), (b"<View/>", "not bytes"),
                                          ("<View>\ud800</View>", "cannot parse"),
                                          ('<?xml version="1.0" encoding="utf-8"?><View/>', "cannot parse"),
                                          ("<View>" * 300 + "</View>" * 300, "cannot parse"),
                                          (_view(IMAGE, " " * MAX_CONFIG_CHARS), "characters long")])
def test_configs_that_are_no_xml_text_are_refused_by_name(config, says):
    with pytest.raises(LabelConfigError, match=says):
        parse_label_config(config)
