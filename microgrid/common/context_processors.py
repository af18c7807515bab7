from microgrid.common.roles import user_roles


def roles(request):
    found = user_roles(getattr(request, "user", None))
    return {"user_roles": found, "is_support": "support" in found}
