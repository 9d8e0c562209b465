from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "clinical_ai.accounts"
    label = "accounts"
