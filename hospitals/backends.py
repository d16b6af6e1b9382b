"""The authentication backends of `AUTHENTICATION_BACKENDS`: Django's and allauth's, with
the user of every signed-in request read by a statement compiled once per connection
(`config.prepared`). A session names the backend that signed it in."""

from allauth.account import auth_backends
from django.contrib.auth import backends
from django.core.exceptions import ValidationError

from config.prepared import PreparedSelect

from .models import User

USER_BY_PK = PreparedSelect(lambda pk: User._default_manager.filter(pk=pk).order_by())


class PreparedUserMixin:
    def get_user(self, user_id):
        try:
            pk = User._meta.pk.to_python(user_id)
        except ValidationError:
            return None
        user = USER_BY_PK.first(pk) if pk is not None else None
        return user if user is not None and self.user_can_authenticate(user) else None


class ModelBackend(PreparedUserMixin, backends.ModelBackend):
    pass


class AuthenticationBackend(PreparedUserMixin, auth_backends.AuthenticationBackend):
    pass
