from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "clinical_ai.accounts"
    label = "accounts"

    def ready(self) -> None:
        # Every sign-in stamps its session for the idle and absolute time-outs, whichever path called
        # django.contrib.auth.login (password, single sign-on, EHR launch, the test client's force_login).
        from django.contrib.auth.signals import user_logged_in

        from clinical_ai.accounts.sessions import session_logged_in

        user_logged_in.connect(
            session_logged_in, dispatch_uid="clinical_ai.accounts.sessions.session_logged_in"
        )
