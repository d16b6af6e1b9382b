from allauth.account.adapter import DefaultAccountAdapter


class AccountAdapter(DefaultAccountAdapter):
    """Accounts are created by invitation from a hospital admin, never by open signup."""

    def is_open_for_signup(self, request):
        return False
