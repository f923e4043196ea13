"""Read the part of a Label Studio labeling config that samiam writes to: BrushLabels on an Image.

The config comes with every request and is untrusted. It is checked by a hardened parser first
(lxml with no DTD, no entities, no network; a document type declaration is refused, so entity
bombs such as billion laughs never expand), then read with label-studio-sdk's public
``LabelInterface``. Parsing takes well under a millisecond, so nothing is cached: the web tier
parses it once per request and hands the :class:`BrushConfig` on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from label_studio_sdk.label_interface import LabelInterface
from lxml import etree

from samiam.errors import LabelConfigError

SMART_TOOLS = (("KeyPointLabels", "point"), ("RectangleLabels", "box"))
"""The smart tools (tag, name) that ``smart=True`` adds: Label Studio sends each click or box
drawn with them to the backend's ``/predict`` as interactive ``context``."""


def brush_label_config(labels: Sequence[str], smart: bool = False) -> str:
    """A labeling config with an ``<Image name="image" value="$image">`` and a
    ``<BrushLabels name="tag">`` bound to it, with one ``<Label>`` per entry of ``labels``, XML-escaped;
    with ``smart``, also a ``smart="true"`` ``<KeyPointLabels name="point">`` and
    ``<RectangleLabels name="box">`` with the same labels (:data:`SMART_TOOLS`).

    Raises :class:`LabelConfigError` for no labels, an empty label or a repeated one.
    """
    labels = [label.strip() for label in labels]
    if not labels or not all(labels):
        raise LabelConfigError(f"labels must be non-empty names, e.g. --labels 'SrTiO3,Ge,Pt/C' (got {labels})")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise LabelConfigError(f"labels must differ; repeated: {', '.join(repeated)}")
    lines = "".join(f"\n    <Label value={quoteattr(label)}/>" for label in labels)
    tools = [("BrushLabels", "tag", "")] + [(tag, name, ' smart="true"') for tag, name in SMART_TOOLS if smart]
    controls = "".join(f'  <{tag} name="{name}" toName="image"{extra}>{lines}\n  </{tag}>\n'
                       for tag, name, extra in tools)
    return f'<View>\n  <Image name="image" value="$image"/>\n{controls}</View>'


EXAMPLE_CONFIG = brush_label_config(("Material 1", "Material 2"))


@dataclass(frozen=True)
class BrushConfig:
    """Where samiam's brush regions go in a labeling config."""

    from_name: str
    """Name of the ``<BrushLabels>`` control."""
    to_name: str
    """Name of the ``<Image>`` it is bound to."""
    value_key: str
    """Task data key holding the image URL (``"image"`` for ``value="$image"``)."""
    labels: tuple[str, ...]
    """Label values in config order (a label's ``alias`` when it has one, as Label Studio stores)."""


def _invalid(problem: str) -> LabelConfigError:
    return LabelConfigError(
        f"unusable Label Studio labeling config: {problem}. samiam needs a <BrushLabels> with at "
        f"least one <Label>, bound by toName to an <Image> whose value is a task field, e.g.\n"
        f"{EXAMPLE_CONFIG}")


MAX_CONFIG_CHARS = 1_000_000
"""Longest labeling config read (real ones are a few kB)."""

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _check_xml(xml: str) -> None:
    """Refuse XML that is malformed or declares a document type (where entities live)."""
    try:
        tree = etree.fromstring(xml, _PARSER).getroottree()
    except (etree.XMLSyntaxError, ValueError) as error:  # ValueError: an encoding declaration
        raise _invalid(f"cannot parse it ({error})") from None
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise _invalid("cannot parse it (it declares a document type <!DOCTYPE ...>, which labeling "
                       "configs never need)")


def parse_label_config(xml: object) -> BrushConfig:
    """The first ``<BrushLabels>`` bound to an ``<Image>`` in the labeling config ``xml``.

    Raises :class:`LabelConfigError` (with a minimal valid example) when ``xml`` is no string,
    is longer than :data:`MAX_CONFIG_CHARS`, is malformed or declares a DTD, or has no
    ``<BrushLabels>`` with labels bound to an ``<Image>``.
    """
    if xml is None or isinstance(xml, str) and not xml.strip():
        raise _invalid("the config is empty")
    if not isinstance(xml, str):
        raise _invalid(f"it must be a string of XML, not {type(xml).__name__}")
    if len(xml) > MAX_CONFIG_CHARS:
        raise _invalid(f"it is {len(xml)} characters long, more than {MAX_CONFIG_CHARS}")
    _check_xml(xml)
    try:
        controls = LabelInterface(xml).controls
    except Exception as error:  # noqa: BLE001 - the SDK's reader raises assorted types on odd tags
        raise _invalid(f"cannot read it ({type(error).__name__}: {error})") from None
    brushes = [control for control in controls if control.tag.lower() == "brushlabels"]
    if not brushes:
        raise _invalid("it has no <BrushLabels> (with name and toName)")
    for brush in brushes:
        images = [tag for tag in brush.objects
                  if tag.tag.lower() == "image" and tag.attr.get("value", "").startswith("$")]
        if not images:
            continue
        if not brush.labels:
            raise _invalid(f"<BrushLabels name={brush.name!r}> has no <Label> with a value")
        return BrushConfig(from_name=brush.name, to_name=images[0].name,
                           value_key=images[0].attr["value"][1:], labels=tuple(brush.labels))
    bound = ", ".join(f"{brush.name!r} -> {','.join(brush.to_name)}" for brush in brushes)
    raise _invalid(f"no <BrushLabels> is bound to an <Image value=\"$field\"> ({bound})")
