"""Django's database sessions, with the read of every request's session compiled once per
connection (`config.prepared`): the same row, the same expiry test (`SESSION_ENGINE`)."""

from django.contrib.sessions.backends import db
from django.contrib.sessions.models import Session
from django.db import router
from django.utils import timezone

from config.prepared import PreparedSelect

SESSION_BY_KEY = PreparedSelect(
    lambda session_key, now: Session.objects.filter(session_key=session_key).filter(expire_date__gt=now))


class SessionStore(db.SessionStore):
    def _get_session_from_db(self):
        if self.session_key is None:  # an invalid key (Django's read finds no row for it either)
            return None
        session = SESSION_BY_KEY.first(self.session_key, timezone.now(), using=router.db_for_read(Session))
        if session is None:
            self._session_key = None
        return session
