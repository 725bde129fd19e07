import shlex
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify

from workspace import gitops
from workspace.secrets import EncryptedTextField
from workspace.states import Transitions, move


def validate_check_command(value: str) -> None:
    try:
        shlex.split(value)
    except ValueError as e:
        raise ValidationError(f"Cannot parse the command: {e}.") from None


class Workspace(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Change sets run it over every member repository at its candidate tree.
    integration_command = models.CharField(
        max_length=1000,
        blank=True,
        validators=[validate_check_command],
        help_text="Run as an argv in a folder holding each member repository under its slug.",
    )

    def __str__(self) -> str:
        return self.name

    def integration_argv(self) -> list[str]:
        return shlex.split(self.integration_command)

    @classmethod
    def default(cls) -> "Workspace":
        workspace, _ = cls.objects.get_or_create(slug="default", defaults={"name": "Default"})
        return workspace


class Repository(Transitions, models.Model):
    class Review(models.TextChoices):
        AUTO = "auto", "automatic"
        HUMAN = "human", "human review"

    class LandVia(models.TextChoices):
        DIRECT = "direct", "directly on the branch"
        PR = "pr", "through pull requests"

    class Forge(models.TextChoices):
        NONE = "", "none"
        GITHUB = "github", "GitHub"
        GITLAB = "gitlab", "GitLab"
        GITEA = "gitea", "Gitea or Forgejo"

    class Landing(models.TextChoices):
        """Whether the lead lands here: it stops when the upstream's history was
        rewritten (a force-push), until an operator rebuilds on the upstream."""

        FOLLOWING = "following", "following the upstream"
        DIVERGED = "diverged", "stopped: the upstream's history was rewritten"
        REBUILDING = "rebuilding", "rebuilding on the upstream"

    STATE = "landing"
    MOVES = {
        "diverge": move(Landing.FOLLOWING, Landing.DIVERGED),
        "rebuild": move(Landing.DIVERGED, Landing.REBUILDING),
        "resume": move(Landing.REBUILDING, Landing.FOLLOWING),
    }
    PUSH_FAILURES_PROBLEM = 3  # failed pushes in a row that make a problem

    workspace = models.ForeignKey(Workspace, models.CASCADE, related_name="repositories")
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True)
    upstream = models.CharField(max_length=500, blank=True, help_text="URL or path it came from")
    branch = models.CharField(max_length=200, default="main")
    bead_prefix = models.SlugField(max_length=20, unique=True)
    check_command = models.CharField(
        max_length=1000,
        blank=True,
        validators=[validate_check_command],
        help_text="Run as an argv (split like a shell would, never run by one).",
    )
    check_timeout_s = models.PositiveIntegerField(default=600)
    review_mode = models.CharField(max_length=10, choices=Review.choices, default=Review.AUTO)
    allow_unscoped = models.BooleanField(
        default=False, help_text="Let beads with an empty scope change any path."
    )
    max_agents = models.PositiveIntegerField(default=3)
    session_minutes = models.PositiveIntegerField(default=30)
    push = models.BooleanField(
        default=True, help_text="Follow the upstream and push each landing to it (a lease)."
    )
    # Following the upstream (agents/jobs/upstream.py): what Corral last saw
    # there, when it last looked, and the last push's result.
    upstream_sha = models.CharField(max_length=64, blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)
    fetch_error = models.TextField(blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)
    push_ok = models.BooleanField(null=True, blank=True)
    push_message = models.TextField(blank=True)
    push_failures = models.PositiveIntegerField(default=0)
    landing = models.CharField(max_length=12, choices=Landing.choices, default=Landing.FOLLOWING)
    diverged_ref = models.CharField(max_length=200, blank=True)
    diverged_at = models.DateTimeField(null=True, blank=True)
    # Checks the upstream's push webhooks (GitHub, Gitea/Forgejo, GitLab): write-only.
    webhook_secret = EncryptedTextField(max_length=200, blank=True, default="")
    dispatch_paused = models.BooleanField(
        default=False, help_text="Corral's own agents take no new work here while paused."
    )
    active = models.BooleanField(default=True)
    # What agents' code may do here (the check gate and sessions run in the sandbox).
    check_network = models.BooleanField(
        default=False, help_text="Let the check command reach the network."
    )
    check_read_paths = models.JSONField(
        default=list,
        blank=True,
        help_text="Absolute paths the check may read (a toolchain, a virtualenv), read-only.",
    )
    allow_submodules = models.BooleanField(
        default=False, help_text="Let submissions add gitlinks and .gitmodules."
    )
    max_blob_bytes = models.PositiveIntegerField(
        default=5_000_000, help_text="The largest file a submission may write."
    )
    max_total_bytes = models.PositiveIntegerField(
        default=20_000_000, help_text="The most bytes of files one submission may write."
    )
    agents_file_ready = models.BooleanField(
        default=False,
        help_text="Beads agents file start open (ready), not proposed for a person to accept.",
    )
    review_by_other = models.BooleanField(
        default=False,
        help_text="A submission's reviewer must not be the person who filed its bead.",
    )
    # Pull-request mode (agents/jobs/forge.py): each bead's commit goes to a
    # branch `corral/<bead>` on the upstream and lands when the forge merges it.
    land_via = models.CharField(
        max_length=10,
        choices=LandVia.choices,
        default=LandVia.DIRECT,
        help_text="Land on the branch directly, or through the forge's pull requests.",
    )
    forge = models.CharField(max_length=10, choices=Forge.choices, blank=True, default="")
    forge_url = models.CharField(
        max_length=300,
        blank=True,
        help_text="The forge's API root (empty: github.com's, gitlab.com's or gitea.com's).",
    )
    forge_repo = models.CharField(
        max_length=200, blank=True, help_text="owner/name (GitLab: group/project) on the forge"
    )
    # Stored encrypted, never shown again (workspace/secrets.py).
    forge_token = EncryptedTextField(max_length=500, blank=True, default="")
    forge_checks_gate = models.BooleanField(
        default=False,
        help_text="A failed check on the forge refuses the submission (pull-request mode).",
    )
    review_limit = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="With more submissions than this waiting for a person, no new sessions "
        "start here (empty: CORRAL_REVIEW_LIMIT; 0: no limit).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "repositories"
        permissions = [
            ("pause_dispatch", "Can pause and resume dispatch in a repository"),
            ("run_dispatch", "Can run dispatch now"),
            ("follow_upstream", "Can turn pushing to the upstream on and off, and rebuild on it"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("repository", args=[self.slug])

    @property
    def canonical_path(self) -> Path:
        return settings.REPOS_DIR / f"{self.slug}.git"

    def check_argv(self) -> list[str]:
        return shlex.split(self.check_command)

    @property
    def lands_via_pr(self) -> bool:
        return self.land_via == self.LandVia.PR

    def clean(self) -> None:
        if self.lands_via_pr and not (self.forge and self.forge_repo and self.upstream):
            raise ValidationError(
                "Landing through pull requests needs an upstream, a forge and its repository "
                "(owner/name)."
            )
        if self.forge_checks_gate and not self.lands_via_pr:
            raise ValidationError(
                "The forge's checks gate judges a pull request's commit: land through pull "
                "requests to use it."
            )
        if self.forge_repo and "/" not in self.forge_repo.strip("/"):
            raise ValidationError("The forge repository is owner/name.")

    @property
    def follows_upstream(self) -> bool:
        """Corral and the upstream share one history: it fetches before landing
        and pushes after. With push off, Corral's branch is its own."""
        return self.push and bool(self.upstream)

    @property
    def has_webhook_secret(self) -> bool:
        """Told without opening it (the page shows only whether one is set)."""
        field = self._meta.get_field("webhook_secret")
        assert isinstance(field, EncryptedTextField)
        return bool(field.held(self))

    @property
    def push_failing(self) -> bool:
        return self.push_failures >= self.PUSH_FAILURES_PROBLEM

    @property
    def lands(self) -> bool:
        return self.landing == self.Landing.FOLLOWING

    def diverge(self, ref: str) -> bool:
        """Stop landing: the upstream's history was rewritten; `ref` keeps ours."""
        return self.move("diverge", diverged_ref=ref, diverged_at=timezone.now())

    def ask_rebuild(self) -> bool:
        return self.move("rebuild")

    def resume(self, upstream_sha: str) -> bool:
        return self.move("resume", upstream_sha=upstream_sha)

    def saw_upstream(self, sha: str, error: str = "") -> None:
        """What a fetch found (a plain UPDATE: the newest look wins)."""
        changes: dict[str, Any] = {"fetched_at": timezone.now(), "fetch_error": error}
        if sha:
            changes["upstream_sha"] = sha
        Repository.objects.filter(pk=self.pk).update(**changes)
        for key, value in changes.items():
            setattr(self, key, value)

    def record_push(self, ok: bool, message: str) -> None:
        """The last push's result; failures in a row counted (an F() increment)."""
        failures: Any = 0 if ok else F("push_failures") + 1
        Repository.objects.filter(pk=self.pk).update(
            pushed_at=timezone.now(),
            push_ok=ok,
            push_message=message[:2000],
            push_failures=failures,
        )
        self.refresh_from_db(fields=["pushed_at", "push_ok", "push_message", "push_failures"])

    def set_dispatch_paused(self, paused: bool) -> bool:
        """Pause or resume dispatch here (a conditional UPDATE); True if this call changed it."""
        changed = Repository.objects.filter(pk=self.pk, dispatch_paused=not paused).update(
            dispatch_paused=paused
        )
        self.dispatch_paused = paused  # whoever made the change, this is the value now
        return bool(changed)

    @classmethod
    def register(
        cls,
        source: str,
        workspace: Workspace,
        name: str | None = None,
        branch: str | None = None,
        **fields: Any,
    ) -> "Repository":
        """Clone `source` (a path or URL) into a canonical bare repository and record it."""
        name = name or gitops.source_name(source)
        slug = slugify(name)
        if not slug:
            raise gitops.GitError(f"cannot make a slug from the name {name!r}; give --name")
        if cls.objects.filter(slug=slug).exists():
            raise gitops.GitError(f"a repository named {slug!r} is already registered")
        path = gitops.clone_bare(source, slug)
        try:
            branch = branch or gitops.default_branch(path) or "main"
            if not gitops.has_branch(path, branch):
                raise gitops.GitError(f"{source} has no branch {branch!r}")
            if carried := gitops.agents_paths(path, branch):
                raise gitops.GitError(
                    f"{source}: its branch {branch!r} carries {', '.join(carried[:3])}: "
                    ".agents/ is Corral's (each clone's context pack), so a repository may not "
                    "hold one; remove it and register the repository again"
                )
            with transaction.atomic():
                repo = cls(workspace=workspace, name=name, slug=slug, branch=branch, **fields)
                repo.upstream = repo.upstream or source
                repo.bead_prefix = repo.bead_prefix or cls.free_prefix(name)
                repo.upstream_sha = gitops.head_sha(path, branch)  # what the clone saw there
                repo.full_clean()
                repo.save()
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        return repo

    @classmethod
    def free_prefix(cls, name: str) -> str:
        base = cls.prefix_for(name)
        prefix, n = base, 1
        while cls.objects.filter(bead_prefix=prefix).exists():
            n += 1
            prefix = f"{base}{n}"
        return prefix

    @staticmethod
    def prefix_for(name: str) -> str:
        """A bead prefix from a name: lowercase letters and digits, like `bd`'s."""
        prefix = "".join(ch for ch in slugify(name) if ch.isalnum())[:8]
        return prefix or "bead"


# The audit trail is a model of this app, kept in a module of its own.
from workspace.audit import AuditEntry  # noqa: E402, F401

# So are people's API tokens.
from workspace.tokens import PersonToken  # noqa: E402, F401
