from django.core.management.base import BaseCommand, CommandError

from hosting.legacy import LegacyImportError, import_legacy


class Command(BaseCommand):
    help = "Import users, registration codes, virtual servers, domains and activity from the legacy platform's database."

    def add_arguments(self, parser):
        parser.add_argument("path", help="the legacy SQLite database (database.db)")
        parser.add_argument("--dry-run", action="store_true", help="report what would happen; change nothing")

    def handle(self, *args, path, dry_run, **options):
        try:
            report = import_legacy(path, dry_run=dry_run)
        except LegacyImportError as error:
            raise CommandError(str(error)) from None

        self.stdout.write(self.style.WARNING("Dry run: nothing was changed.") if dry_run else self.style.SUCCESS("Imported."))
        self.stdout.write(f"\n{'table':<20} {'read':>6} {'imported':>9} {'skipped':>8}")
        for table, counts in report.counts.items():
            self.stdout.write(f"{table:<20} {counts['read']:>6} {counts['imported']:>9} {counts['skipped']:>8}")
        if report.notes:
            self.stdout.write("\nDetails:")
            for table, legacy_id, text in report.notes:
                self.stdout.write(f"  {table} #{legacy_id}: {text}")
