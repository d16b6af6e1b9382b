"""The form renderer of the portal and the admin (`FORM_RENDERER`): Django's template renderer,
except that Django's own templates of the common widgets (inputs, checkboxes, selects, radio
buttons and checkbox lists, text areas) are written out by Python code that produces the same
text, character for character.

Django renders each widget, and each option of a select or radio list, through its template
engine, with an include of an attributes template for each element: the patient list's filter
form (a search box, a select of seven statuses and a checkbox) cost about 0.9 ms of the page's
8.3 ms of CPU, which this renderer saves (README "Performance").

What goes through the templates as before: any other template (forms, fields, errors, the
admin's widgets), a widget template that a project or app template directory overrides, an
option with another template, and any value that is not plain text, a number, a lazy
translation or None (a date, which a template would localize, for instance).
`tests/config/test_form_renderer.py` renders each widget both ways and compares the text."""

from decimal import Decimal
from pathlib import Path

import django
from django.forms.renderers import DjangoTemplates
from django.template import Context
from django.template.base import render_value_in_context
from django.utils.functional import Promise, cached_property
from django.utils.safestring import SafeData, mark_safe

_WIDGETS = "django/forms/widgets/"
_DJANGO_TEMPLATES = Path(django.__file__).parent / "forms" / "templates"
_CONTEXT = Context()  # autoescape on; localization and time zone as the settings say, as in the templates
_PLAIN = (str, int, float, Decimal, Promise)


class _NotPlain(Exception):
    """A value the templates might treat otherwise (called, resolved): use the templates."""


def _text(value) -> str:
    """`{{ value }}`."""
    if value is not None and not isinstance(value, _PLAIN):
        raise _NotPlain
    return render_value_in_context(value, _CONTEXT)


def _string(value) -> str:
    """`{{ value|stringformat:'s' }}` (a filter that keeps a safe string safe)."""
    if value is not None and not isinstance(value, _PLAIN):
        raise _NotPlain
    text = "%s" % value
    return render_value_in_context(mark_safe(text) if isinstance(value, SafeData) else text, _CONTEXT)


def _attrs(attrs: dict) -> str:
    """attrs.html."""
    out = []
    for name, value in attrs.items():
        if value is not False:
            out.append(" " + _text(name))
            if value is not True:
                out.append('="' + _string(value) + '"')
    return "".join(out)


def _input(widget: dict) -> str:
    """input.html (and the templates that only include it)."""
    value = widget["value"]
    return ('<input type="' + _text(widget["type"]) + '" name="' + _text(widget["name"]) + '"'
            + ('' if value is None else ' value="' + _string(value) + '"') + _attrs(widget["attrs"]) + ">\n")


def _select_option(option: dict) -> str:
    """select_option.html."""
    return '<option value="' + _string(option["value"]) + '"' + _attrs(option["attrs"]) + ">" \
        + _text(option["label"]) + "</option>\n"


def _input_option(option: dict) -> str:
    """input_option.html (radio_option.html and checkbox_option.html include it)."""
    if not option["wrap_label"]:
        return _input(option) + "\n"
    label_id = option["attrs"].get("id")
    return ("<label" + (' for="' + _text(label_id) + '"' if label_id else "") + ">" + _input(option)
            + " " + _text(option["label"]) + "</label>\n")


def _included_input_option(option: dict) -> str:
    """radio_option.html and checkbox_option.html: input_option.html and a line break."""
    return _input_option(option) + "\n"


_SELECT_OPTIONS = {_WIDGETS + "select_option.html": _select_option}
_INPUT_OPTIONS = {_WIDGETS + "radio_option.html": _included_input_option,
                  _WIDGETS + "checkbox_option.html": _included_input_option}


def _groups(widget: dict, option_templates: dict, group_open: str, option: str, group_close: str) -> str:
    """The loop over the option groups of select.html and multiple_input.html: a named
    group's opening and closing (`group_open` % its name) around its options (`option` %
    each one, rendered by the function for its template). An option with a template of its
    own goes through the templates."""
    out = []
    for group_name, options, _index in widget["optgroups"]:
        if group_name:
            out.append(group_open % _text(group_name))
        for each in options:
            render = option_templates.get(each["template_name"])
            if render is None:
                raise _NotPlain
            out.append(option % render(each))
        if group_name:
            out.append(group_close)
    return "".join(out)


def _select(widget: dict) -> str:
    """select.html."""
    return ('<select name="' + _text(widget["name"]) + '"' + _attrs(widget["attrs"]) + ">"
            + _groups(widget, _SELECT_OPTIONS, '\n  <optgroup label="%s">', "\n  %s", "\n  </optgroup>")
            + "\n</select>\n")


def _multiple_input(widget: dict) -> str:
    """multiple_input.html (radio.html and checkbox_select.html include it)."""
    attrs = widget["attrs"]
    element_id, css_class = attrs.get("id", ""), attrs.get("class", "")
    return ("<div" + (' id="' + _text(element_id) + '"' if element_id else "")
            + (' class="' + _text(css_class) + '"' if css_class else "") + ">"
            + _groups(widget, _INPUT_OPTIONS, "\n  <div><label>%s</label>", "<div>\n    %s</div>", "\n  </div>")
            + "\n</div>\n")


def _textarea(widget: dict) -> str:
    """textarea.html."""
    value = widget["value"]
    return ('<textarea name="' + _text(widget["name"]) + '"' + _attrs(widget["attrs"]) + ">\n"
            + (_text(value) if value else "") + "</textarea>\n")


_RENDER = {
    **{f"{_WIDGETS}{name}.html": _input for name in (
        "input", "text", "number", "email", "url", "password", "hidden", "search", "tel", "color", "date",
        "datetime", "time", "checkbox", "file")},
    _WIDGETS + "select.html": _select,
    _WIDGETS + "radio.html": _multiple_input,
    _WIDGETS + "checkbox_select.html": _multiple_input,
    _WIDGETS + "multiple_input.html": _multiple_input,
    _WIDGETS + "textarea.html": _textarea,
}


# Every template the functions above stand for, the ones they include among them.
_COVERED = [*_RENDER, *(_WIDGETS + name for name in (
    "attrs.html", "select_option.html", "input_option.html", "radio_option.html", "checkbox_option.html"))]


class WidgetRenderer(DjangoTemplates):
    @cached_property
    def _templates_are_djangos(self) -> bool:
        """Whether each covered template the engine finds is Django's own file."""
        return all(Path(self.get_template(name).origin.name).is_relative_to(_DJANGO_TEMPLATES) for name in _COVERED)

    def render(self, template_name, context, request=None):
        render = _RENDER.get(template_name)
        if render is not None and "widget" in context and self._templates_are_djangos:
            try:
                return render(context["widget"]).strip()
            except _NotPlain:
                pass
        return super().render(template_name, context, request)
