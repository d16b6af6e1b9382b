"""List filters of the screening API."""

import django_filters as filters
from django.db.models import Exists, OuterRef, Q

from hospitals.api.filters import ApiFilterSet, IdFilter

from screening.models import AiLabel, AiResult, Review, ReviewDecision, Screening, ScreeningStatus


class ScreeningFilter(ApiFilterSet):
    patient = IdFilter(field_name="patient_id")
    status = filters.MultipleChoiceFilter(choices=ScreeningStatus.choices, distinct=False)
    label = filters.ChoiceFilter(choices=AiLabel.choices, method="filter_label",
                                 label="AI label of the screening's result.")
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    finished_since = filters.IsoDateTimeFilter(field_name="finished_at", lookup_expr="gte",
                                               label="Finished at or after this time (ISO 8601), for sync.")
    updated_since = filters.IsoDateTimeFilter(
        method="filter_updated_since",
        label="Created, (re)queued, started or finished at or after this time (ISO 8601), for sync.")

    class Meta:
        model = Screening
        fields = ["patient", "status", "label", "created_after", "created_before", "finished_since", "updated_since"]

    def filter_label(self, queryset, name, value):
        # A semi-join, not a join + DISTINCT: the page stays an index walk in id order.
        return queryset.filter(Exists(AiResult.objects.filter(screening=OuterRef("pk"), label=value)))

    def filter_updated_since(self, queryset, name, value):
        # Each time has its own (hospital, time) index: the database merges the ranges.
        return queryset.filter(Q(created_at__gte=value) | Q(enqueued_at__gte=value) | Q(started_at__gte=value)
                               | Q(finished_at__gte=value))


class AiResultFilter(ApiFilterSet):
    patient = IdFilter(field_name="patient_id")
    screening = IdFilter(field_name="screening_id")
    label = filters.ChoiceFilter(choices=AiLabel.choices)
    covid_positive = filters.BooleanFilter()
    created_since = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = AiResult
        fields = ["patient", "screening", "label", "covid_positive", "created_since"]


class ReviewFilter(ApiFilterSet):
    patient = IdFilter(field_name="patient_id")
    screening = IdFilter(field_name="screening_id")
    decision = filters.ChoiceFilter(choices=ReviewDecision.choices)
    clinical_label = filters.ChoiceFilter(choices=AiLabel.choices)
    reviewed_since = filters.IsoDateTimeFilter(field_name="reviewed_at", lookup_expr="gte")

    class Meta:
        model = Review
        fields = ["patient", "screening", "decision", "clinical_label", "reviewed_since"]
