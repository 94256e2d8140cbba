from django import forms
from django.conf import settings

from hosting.models import VirtualServer

from .models import ApiToken


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What it is for, e.g. “CI deploys”.")
    scope = forms.ChoiceField(choices=ApiToken.Scope.choices, initial=ApiToken.Scope.READ, widget=forms.RadioSelect)
    days = forms.TypedChoiceField(label="Lasts", coerce=int, initial=settings.API_TOKEN_DEFAULT_DAYS,
                                  choices=[(days, f"{days} days") for days in settings.API_TOKEN_DAYS])
    servers = forms.ModelMultipleChoiceField(queryset=VirtualServer.objects.none(), required=False, widget=forms.CheckboxSelectMultiple,
                                             help_text="None chosen: every server of yours.")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["servers"].queryset = VirtualServer.objects.live().filter(owner=user)
