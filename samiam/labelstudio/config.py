"""Read the part of a Label Studio labeling config that samiam writes to: BrushLabels on an Image."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from xml.sax.saxutils import quoteattr

from label_studio_sdk._legacy.exceptions import LabelStudioXMLSyntaxErrorSentryIgnored as XMLSyntaxError
from label_studio_sdk.label_interface import LabelInterface

from samiam.errors import LabelConfigError


def brush_label_config(labels: Sequence[str]) -> str:
    """A labeling config with an ``<Image name="image" value="$image">`` and a
    ``<BrushLabels name="tag">`` bound to it, with one ``<Label>`` per entry of ``labels``, XML-escaped.

    Raises :class:`LabelConfigError` for no labels, an empty label or a repeated one.
    """
    labels = [label.strip() for label in labels]
    if not labels or not all(labels):
        raise LabelConfigError(f"labels must be non-empty names, e.g. --labels 'SrTiO3,Ge,Pt/C' (got {labels})")
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise LabelConfigError(f"labels must differ; repeated: {', '.join(repeated)}")
    lines = "".join(f"\n    <Label value={quoteattr(label)}/>" for label in labels)
    return f'<View>\n  <Image name="image" value="$image"/>\n  <BrushLabels name="tag" toName="image">{lines}\n' \
           f"  </BrushLabels>\n</View>"


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


@lru_cache(maxsize=64)
def parse_label_config(xml: str) -> BrushConfig:
    """The first ``<BrushLabels>`` bound to an ``<Image>`` in the labeling config ``xml``.

    Raises :class:`LabelConfigError` (with a minimal valid example) when the XML is malformed
    or has no ``<BrushLabels>`` with labels bound to an ``<Image>``. Results are cached: Label
    Studio sends the same config with every request.
    """
    if not xml or not xml.strip():
        raise _invalid("the config is empty")
    try:
        controls = LabelInterface(xml).controls
    except (XMLSyntaxError, ValueError, KeyError) as error:  # tags missing required attributes: ValueError/KeyError
        raise _invalid(f"cannot parse it ({error})") from None
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
