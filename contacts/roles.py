"""The two roles crmseg ships with, kept in step with the models by `sync_roles`.

- Operations build and govern segments in the admin: every permission on the contacts,
  predictions, segments and activation apps (models added later included), plus viewing users so they can
  pick contact owners.
- Sales read contact context: view-only on contacts, their companies, lifecycle history,
  activities and deals. Sales users are not staff, so the admin stays closed to them.

The groups are declared here, not in the admin: `sync_roles` sets their permissions to exactly
this list, so hand edits to these two groups are undone by the next `migrate`. Give exceptions a
group of their own.
"""

from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.db.models import Q

OPERATIONS = "Operations"
SALES = "Sales"

OPERATIONS_APPS = ("contacts", "predictions", "segments", "activation")
OPERATIONS_EXTRA = (("auth", "view_user"),)
SALES_VIEWS = (
    ("contacts", "view_contact"),
    ("contacts", "view_company"),
    ("contacts", "view_lifecyclechange"),
    ("contacts", "view_activity"),
    ("contacts", "view_deal"),
)


def _codename_filter(pairs: tuple[tuple[str, str], ...]) -> Q:
    query = Q(pk__in=[])
    for app_label, codename in pairs:
        query |= Q(content_type__app_label=app_label, codename=codename)
    return query


def sync_roles(*, apps: Apps = global_apps, using: str = "default") -> None:
    """Create the Operations and Sales groups if missing and set their permissions."""
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permissions = Permission.objects.using(using)

    operations, _ = Group.objects.using(using).get_or_create(name=OPERATIONS)
    operations.permissions.set(
        permissions.filter(Q(content_type__app_label__in=OPERATIONS_APPS) | _codename_filter(OPERATIONS_EXTRA))
    )
    sales, _ = Group.objects.using(using).get_or_create(name=SALES)
    sales.permissions.set(permissions.filter(_codename_filter(SALES_VIEWS)))


def sync_roles_after_migrate(sender, *, using: str, apps: Apps = global_apps, **kwargs) -> None:
    """post_migrate receiver: runs after auth created the permissions of each of our apps.

    `flush` (transactional tests) sends post_migrate without `apps`: the live registry is right then.
    """
    if sender.label in OPERATIONS_APPS:
        sync_roles(apps=apps, using=using)
