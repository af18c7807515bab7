from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.models.signals import post_migrate

PRODUCT_APPS = (
    "common",
    "topology",
    "limits",
    "telemetry",
    "balancing",
    "dispatch",
    "stations",
    "envelopes",
    "capabilities",
    "legacy_circuit",
    "simulator",
)
# Support staff may also see and clear login lockouts (django-axes) in admin; users and
# groups stay with superusers.
SUPPORT_ADMIN_APPS = (*PRODUCT_APPS, "axes")


class SupportAdminConfig(admin_apps.AdminConfig):
    default = False
    default_site = "microgrid.common.admin_site.SupportAdminSite"


def grant_support_permissions(sender, **kwargs):
    """The three roles exist, and support staff may see and fix every product model in admin.

    Runs after every migrate because permissions only exist once their models
    have been migrated, and after every flush (a test database emptied between
    transactional tests), which would otherwise leave the roles of the data
    migration common/0002_roles behind.
    """
    from django.contrib.auth.models import Group, Permission

    from microgrid.common.roles import ALL_ROLES

    for role in ALL_ROLES:
        Group.objects.get_or_create(name=role)
    group = Group.objects.get(name="support")
    perms = Permission.objects.filter(content_type__app_label__in=SUPPORT_ADMIN_APPS)
    group.permissions.add(*perms)


class CommonConfig(AppConfig):
    default = True
    name = "microgrid.common"
    label = "common"
    verbose_name = "Access and common"

    def ready(self):
        from microgrid.common import schema  # noqa: F401  (registers the token scheme)

        post_migrate.connect(grant_support_permissions, dispatch_uid="grant_support_permissions")

        from simple_history.signals import pre_create_historical_record

        from microgrid.common.history import name_unattributed_change

        pre_create_historical_record.connect(
            name_unattributed_change, dispatch_uid="name_unattributed_change"
        )
