"""Hospitals are the tenants. Every hospital-owned row elsewhere carries a `hospital` FK
and a django-scopes scoped manager (`hospitals.managers.HospitalScopedManager`), so a
query outside an open scope raises instead of leaking another hospital's rows."""

from django.contrib.auth.base_user import BaseUserManager
from django.contrib.auth.models import AbstractUser
from django.db import models

from .managers import HospitalScopedManager


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra):
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra)

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self._create_user(email, password, **extra)


class User(AbstractUser):
    """A person who logs in with an email address. Hospital access comes only from
    active memberships; `is_superuser` marks platform administrators.

    Invariant: emails are unique case-insensitively: they are stored lower-cased (`save`)
    under a plain unique index, and services look them up with `iexact` before creating
    (allauth's own conditional constraint is not created on MySQL/MariaDB)."""

    username = None
    email = models.EmailField("email address", unique=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    def save(self, *args, **kwargs):
        self.email = (self.email or "").strip().lower()
        super().save(*args, **kwargs)

    def __str__(self):
        return self.get_full_name() or self.email


class Hospital(models.Model):
    """A tenant. Its slug is the first path segment of every portal and API URL."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Role(models.TextChoices):
    HOSPITAL_ADMIN = "hospital_admin", "Hospital admin"
    CLINICIAN = "clinician", "Clinician"
    RADIOLOGIST = "radiologist", "Radiologist"
    REGISTRAR = "registrar", "Registrar"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    """A user's role in one hospital. An inactive membership grants nothing."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    hospital = models.ForeignKey(Hospital, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    is_active = models.BooleanField(default=True)
    invited_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)

    objects = HospitalScopedManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "hospital"], name="membership_user_hospital_unique")]
        ordering = ["hospital__name", "user__email"]

    def __str__(self):
        return f"{self.user} @ {self.hospital} ({self.get_role_display()})"


class AuditAction(models.TextChoices):
    VIEW = "view", "Viewed"
    LIST = "list", "Listed"
    CREATE = "create", "Created"
    UPDATE = "update", "Updated"
    DELETE = "delete", "Deleted"
    EXPORT = "export", "Exported"
    LOGIN = "login", "Signed in"
    LOGOUT = "logout", "Signed out"
    LOGIN_FAILED = "login_failed", "Failed sign-in"


class AuditEvent(models.Model):
    """One append-only entry of the audit trail: who did what to which object, where from.

    Entries form one hash chain per hospital (`chain`): `hash` covers this entry's fields
    and the previous entry's hash, so `manage.py audit_verify` finds an edited, inserted or
    deleted row. Rows are never updated or deleted by the application; database triggers
    refuse UPDATE and DELETE (see the migration), and `save()` refuses an update.
    The entry holds ids, never patient names, so the trail itself carries no extra PHI."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    chain = models.CharField(max_length=64, db_index=True)
    seq = models.PositiveBigIntegerField()
    at = models.DateTimeField()
    actor = models.ForeignKey(User, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    actor_email = models.CharField(max_length=254, blank=True)
    action = models.CharField(max_length=20, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = HospitalScopedManager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "seq"], name="audit_chain_seq_unique")]
        indexes = [models.Index(fields=["hospital", "-at"]), models.Index(fields=["object_type", "object_id"])]
        ordering = ["-at", "-seq"]

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise RuntimeError("Audit events are append-only.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("Audit events are append-only.")

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_email} {self.action} {self.object_type} {self.object_id}"


class AuditChainHead(models.Model):
    """The last seq and hash of each chain. Appends lock this row, so entries of one chain
    are written one at a time and the chain never forks; it also lets the verifier see a
    deletion at the tail."""

    chain = models.CharField(max_length=64, unique=True)
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64)


class PartnerClient(models.Model):
    """An OAuth2 client-credentials application of a partner system, bound to one hospital.

    A token of this client opens that hospital's scope only (`hospitals.api.base`); its
    scopes are limited to `allowed_scopes` (`hospitals.api.scopes.PartnerScopes`). Writes
    made with it are recorded as `service_user`, an account that cannot sign in (inactive,
    no password, no membership), so records name the partner system rather than the admin
    who created the client; the audit trail adds the client id to each entry's detail.
    A revoked client (`revoked_at`) gets no new tokens and its tokens were deleted."""

    hospital = models.ForeignKey(Hospital, on_delete=models.PROTECT, related_name="partner_clients")
    application = models.OneToOneField(
        "oauth2_provider.Application", on_delete=models.CASCADE, related_name="partner_client"
    )
    name = models.CharField(max_length=100)
    allowed_scopes = models.CharField(max_length=200, help_text="Space-separated OAuth2 scopes.")
    service_user = models.OneToOneField(User, on_delete=models.PROTECT, related_name="partner_client")
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    objects = HospitalScopedManager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.name} ({self.hospital})"

    @property
    def scope_list(self) -> list[str]:
        return self.allowed_scopes.split()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
