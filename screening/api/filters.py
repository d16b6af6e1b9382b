"""List filters of the screening API."""

import django_filters as filters

from hospitals.api.filters import IdFilter

from screening.models import AiLabel, AiResult, Review, ReviewDecision, Screening, ScreeningStatus


class ScreeningFilter(filters.FilterSet):
    patient = IdFilter(field_name="patient_id")
    status = filters.MultipleChoiceFilter(choices=ScreeningStatus.choices)
    label = filters.ChoiceFilter(field_name="results__label", choices=AiLabel.choices, distinct=True,
                                 label="AI label of the screening's result.")
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    finished_since = filters.IsoDateTimeFilter(field_name="finished_at", lookup_expr="gte",
                                               label="Finished at or after this time (ISO 8601), for sync.")

    class Meta:
        model = Screening
        fields = ["patient", "status", "label", "created_after", "created_before", "finished_since"]


class AiResultFilter(filters.FilterSet):
    patient = IdFilter(field_name="patient_id")
    screening = IdFilter(field_name="screening_id")
    label = filters.ChoiceFilter(choices=AiLabel.choices)
    covid_positive = filters.BooleanFilter()
    created_since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = AiResult
        fields = ["patient", "screening", "label", "covid_positive", "created_since"]


class ReviewFilter(filters.FilterSet):
    patient = IdFilter(field_name="patient_id")
    screening = IdFilter(field_name="screening_id")
    decision = filters.ChoiceFilter(choices=ReviewDecision.choices)
    clinical_label = filters.ChoiceFilter(choices=AiLabel.choices)
    reviewed_since = filters.IsoDateTimeFilter(field_name="reviewed_at", lookup_expr="gte")

    class Meta:
        model = Review
        fields = ["patient", "screening", "decision", "clinical_label", "reviewed_since"]
