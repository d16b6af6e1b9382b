from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from .base import HospitalAPIView
from .serializers import HospitalSerializer


class HospitalView(HospitalAPIView):
    """The hospital of the URL, as the credential sees it: a cheap way for a partner to
    check its token and scopes."""

    action_policies = {"get": "patient.view"}

    @extend_schema(operation_id="hospital_retrieve", responses=HospitalSerializer, tags=["hospital"])
    def get(self, request, hospital_slug):
        return Response(HospitalSerializer(request.hospital, context={"request": request}).data)
