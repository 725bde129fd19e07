import shlex
import shutil
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.urls import reverse
from django.utils.text import slugify

from workspace import gitops


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


class Repository(models.Model):
    class Review(models.TextChoices):
        AUTO = "auto", "automatic"
        HUMAN = "human", "human review"

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
    push = models.BooleanField(default=False, help_text="Fast-forward the upstream after commits.")
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
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "repositories"
        permissions = [
            ("pause_dispatch", "Can pause and resume dispatch in a repository"),
            ("run_dispatch", "Can run dispatch now"),
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
            with transaction.atomic():
                repo = cls(workspace=workspace, name=name, slug=slug, branch=branch, **fields)
                repo.upstream = repo.upstream or source
                repo.bead_prefix = repo.bead_prefix or cls.free_prefix(name)
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
