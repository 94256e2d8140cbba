import getpass
import secrets
import sys

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from accounts.activity import Action
from accounts.models import User, normalize_email
from accounts.services import activity_log


class Command(BaseCommand):
    help = "Create an administrator. The password is prompted for, or generated and printed once."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument(
            "--generate-password",
            action="store_true",
            help="Generate a random password and print it once (the default without a terminal).",
        )

    def handle(self, *args, email, generate_password, **options):
        email = normalize_email(email)
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"{email!r} is not a valid email address.") from None
        if User.objects.filter(email=email).exists():
            raise CommandError(f"A user with the email {email} already exists.")

        interactive = self.stdin_is_terminal() and not generate_password
        password = self.prompt_password(email) if interactive else secrets.token_urlsafe(15)

        user = User.objects.create_user(email=email, password=password, is_admin=True)
        activity_log(
            action=Action.USER_CREATED,
            user=user,
            message=f"Created admin {email} from the command line",
            target=email,
        )
        self.stdout.write(self.style.SUCCESS(f"Created administrator {email}."))
        if not interactive:
            self.stdout.write(f"Password (shown only now): {password}")

    def stdin_is_terminal(self):
        return sys.stdin.isatty()

    def prompt_password(self, email):
        for _ in range(3):
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password again: "):
                self.stderr.write("The passwords do not match.")
                continue
            try:
                password_validation.validate_password(password, User(email=email))
            except ValidationError as error:
                self.stderr.write(" ".join(error.messages))
                continue
            return password
        raise CommandError("No valid password given.")
