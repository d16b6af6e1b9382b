"""`config.forms.WidgetRenderer` writes the same text as Django's widget templates, for every
widget it covers, and leaves everything else to the templates."""

import datetime
from pathlib import Path

import pytest
from django import forms
from django.forms.renderers import DjangoTemplates
from django.utils import translation
from django.utils.formats import localize
from django.utils.functional import cached_property
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy

from config.forms import WidgetRenderer
from hospitals.forms import AuditFilterForm, MemberInviteForm
from patients.forms import LabTestForm, PatientForm, PatientSearchForm
from screening.forms import ApplyStatusForm, ReviewForm, WorklistFilterForm

DJANGO, OURS = DjangoTemplates(), WidgetRenderer()

AWKWARD = ['a "quoted" <b>&amp;</b> \'x\'', mark_safe("<i>safe</i>"), gettext_lazy("Any status"), 1234, 0, 2.5, ""]
ATTRS = [{}, {"id": "id_x", "class": "a b", "required": True, "disabled": False, "data-n": 7, "placeholder": AWKWARD[0]},
         {"id": "", "class": ""}]
CHOICES = [
    [("", gettext_lazy("Any status")), ("infected", "Infected"), ("x<y", 'A "b" & c'), (3, 1234)],
    [("Group <1>", [("a", "A"), ("b", mark_safe("<em>B</em>"))]), ("c", "C"), (gettext_lazy("Status"), [(1, 2)])],
    [],
]


def widget_cases():
    for widget in (forms.TextInput(), forms.NumberInput(), forms.EmailInput(), forms.URLInput(), forms.SearchInput(),
                   forms.TelInput(), forms.ColorInput(), forms.PasswordInput(render_value=True), forms.HiddenInput(),
                   forms.DateInput(), forms.DateTimeInput(), forms.TimeInput(), forms.Textarea(), forms.FileInput()):
        for value in [None, *AWKWARD, datetime.date(2026, 3, 4), datetime.datetime(2026, 3, 4, 5, 6, 7)]:
            for attrs in ATTRS:
                yield widget, value, attrs
    for value in (None, True, False, "on", ""):
        for attrs in ATTRS:
            yield forms.CheckboxInput(), value, attrs
    for widget_class in (forms.Select, forms.SelectMultiple, forms.RadioSelect, forms.CheckboxSelectMultiple):
        for choices in CHOICES:
            for value in (None, "", "infected", ["a", 1], 3, "x<y"):
                for attrs in ATTRS:
                    yield widget_class(choices=choices), value, attrs
    for value in (None, True, False, "unknown"):
        yield forms.NullBooleanSelect(), value, {}


def render(widget, value, attrs, renderer):
    return widget.render("field<1>", value, attrs=dict(attrs), renderer=renderer)


@pytest.mark.parametrize("language", ["en", "fr"])
def test_each_covered_widget_renders_as_djangos_template_does(settings, monkeypatch, language):
    settings.USE_THOUSAND_SEPARATOR = True  # numbers printed by {{ }} are localized, by stringformat not
    cases = list(widget_cases())
    with translation.override(language):
        expected = [render(*case, DJANGO) for case in cases]
        grouped = localize(1234)
        with monkeypatch.context() as patched:  # plain values never reach the templates
            patched.setattr(DjangoTemplates, "render", lambda *a, **k: pytest.fail(f"templates used for {a[1]}"))
            got = [render(*case, OURS) for case in cases]
    assert len(cases) > 600
    for case, mine, theirs in zip(cases, got, expected, strict=True):
        assert mine == theirs, case
    assert grouped != "1234" and any(grouped in text for text in expected)
    assert any("<optgroup" in text for text in expected)


def test_anything_else_goes_through_the_templates(monkeypatch):
    through_templates = []
    original = DjangoTemplates.render
    monkeypatch.setattr(DjangoTemplates, "render",
                        lambda self, name, *a, **k: through_templates.append(name) or original(self, name, *a, **k))
    day = datetime.date(2026, 1, 2)  # a label the templates localize
    other_option = forms.Select(choices=[("a", "A")])
    other_option.option_template_name = "django/forms/widgets/radio_option.html"
    cases = [(forms.Select(choices=[("a", day)]), "a", {}), (forms.Select(choices=[("a", "A")]), "a", {"data-x": [1]}),
             (other_option, "a", {}), (forms.ClearableFileInput(), None, {}), (forms.SelectDateWidget(), None, {})]
    for widget, value, attrs in cases:
        ours = render(widget, value, attrs, OURS)
        assert ours == render(widget, value, attrs, DJANGO)
    assert '<option value="a" selected>Jan. 2, 2026</option>' in render(cases[0][0], "a", {}, OURS)
    assert through_templates.count("django/forms/widgets/select.html") == 7  # three selects by both, one more by ours
    assert "django/forms/widgets/clearable_file_input.html" in through_templates


def test_an_overridden_widget_template_turns_the_shortcut_off(tmp_path):
    """An app or project that overrides one of the covered templates gets its own text."""
    (tmp_path / "django" / "forms" / "widgets").mkdir(parents=True)
    (tmp_path / "django" / "forms" / "widgets" / "attrs.html").write_text(
        "{% for name, value in widget.attrs.items %} {{ name }}!{% endfor %}")

    class Overridden(WidgetRenderer):
        @cached_property
        def engine(self):
            return self.backend({"APP_DIRS": True, "NAME": "overridden", "OPTIONS": {},
                                 "DIRS": [tmp_path, Path(forms.__file__).parent / "templates"]})

    assert forms.TextInput().render("n", "v", attrs={"id": "i"}, renderer=Overridden()) == \
        '<input type="text" name="n" value="v" id!>'
    assert forms.TextInput().render("n", "v", attrs={"id": "i"}, renderer=OURS) == \
        '<input type="text" name="n" value="v" id="i">'


@pytest.mark.django_db
def test_the_portals_forms_render_as_with_djangos_templates():
    bound = {"q": "<b>Smith</b>", "status": "infected", "awaiting_review": "on", "decision": "confirm",
             "reason": "x < y", "effective_date": "2026-01-02", "email": "not an email", "test_type": "rt_pcr"}
    for form_class in (PatientSearchForm, PatientForm, LabTestForm, ReviewForm, ApplyStatusForm, WorklistFilterForm,
                       AuditFilterForm, MemberInviteForm):
        for data in (None, bound):
            ours, djangos = form_class(data=data, renderer=OURS), form_class(data=data, renderer=DJANGO)
            assert str(ours) == str(djangos), form_class.__name__
            assert [str(field) for field in ours] == [str(field) for field in djangos]
