from rest_framework import serializers

from hospitals.models import Hospital


class CredentialSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=["client", "session"])
    name = serializers.CharField(help_text="The client's name, or the user's email address.")
    scopes = serializers.ListField(child=serializers.CharField(), help_text="OAuth2 scopes (clients).")
    role = serializers.CharField(allow_null=True, help_text="Membership role (session users).")


class HospitalSerializer(serializers.ModelSerializer):
    """The hospital the credential is bound to, and what the credential may do there."""

    credential = serializers.SerializerMethodField()

    class Meta:
        model = Hospital
        fields = ["slug", "name", "credential"]

    def get_credential(self, hospital) -> CredentialSerializer:
        request = self.context["request"]
        client = getattr(request, "partner_client", None)
        if client is not None:
            data = {"kind": "client", "name": client.name, "scopes": sorted(request.auth.scope.split()), "role": None}
        else:
            data = {"kind": "session", "name": request.user.email, "scopes": [], "role": request.membership.role}
        return CredentialSerializer(data).data
