"""Re-walks the audit hash chains and reports every problem: an edited entry, a deleted
or inserted one, a missing tail. Exit status 0 when every chain is intact, 1 otherwise,
so it can run from cron or a monitoring check."""

from django.core.management.base import BaseCommand, CommandError

from hospitals.audit import audit_verify


class Command(BaseCommand):
    help = "Verify the audit trail's hash chains (all chains, or one with --chain)."

    def add_arguments(self, parser):
        parser.add_argument("--chain", help="Only this chain: 'h<hospital id>' or 'platform'.")

    def handle(self, *args, chain=None, **options):
        checked, problems = audit_verify(chain=chain)
        self.stdout.write(f"Audit entries checked: {checked}")
        for problem in problems:
            where = f"seq {problem.seq}" if problem.seq is not None else "chain"
            self.stdout.write(self.style.ERROR(f"chain {problem.chain} {where}: {problem.problem}"))
        if problems:
            raise CommandError(f"{len(problems)} problem(s) found in the audit trail.")
        self.stdout.write(self.style.SUCCESS("Audit trail intact."))
