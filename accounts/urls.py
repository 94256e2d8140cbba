from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "accounts"

urlpatterns = [
    path("login/", views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views.signup, name="signup"),
    path("password/forgot/", views.PasswordForgotView.as_view(), name="password_forgot"),
    path("password/forgot/sent/", views.PasswordForgotSentView.as_view(), name="password_forgot_sent"),
    path("password/reset/<uidb64>/<token>/", views.PasswordResetView.as_view(), name="password_reset"),
    path("account/", views.account, name="account"),
    path("account/keys/add/", views.ssh_key_add, name="ssh_key_add"),
    path("account/keys/<int:key_id>/remove/", views.ssh_key_remove, name="ssh_key_remove"),
    path("admin/code/generate/", views.registration_code_generate, name="registration_code_generate"),
    path("admin/code/revoke/", views.registration_code_revoke, name="registration_code_revoke"),
    path("admin/users/", views.user_list, name="user_list"),
    path("admin/users/new/", views.user_create, name="user_create"),
    path("admin/users/<int:user_id>/", views.user_detail, name="user_detail"),
    path("admin/users/<int:user_id>/password/", views.user_set_password, name="user_set_password"),
    path("admin/users/<int:user_id>/delete/", views.user_delete, name="user_delete"),
    path("admin/activity/", views.activity_list, name="activity_list"),
]
