"""What the deploy outcome figures (DORA) need beyond the deploys themselves: when
each deployed commit was made, and which deploy a rollback replaced."""

from __future__ import annotations

from django.db import models

from deploys.models.runs import DeployRun


class CommitDate(models.Model):
    """When a commit was made, as GitHub reports it (recorded when a deploy request
    resolves its ref or SHA; lead time for changes starts here)."""

    repository = models.CharField(max_length=200)
    sha = models.CharField(max_length=40)
    committed_at = models.DateTimeField()

    class Meta:
        ordering = ["repository", "committed_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["repository", "sha"], name="commit_date_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.repository}@{self.sha[:7]} {self.committed_at:%Y-%m-%d}"


class Rollback(models.Model):
    """A deploy requested as a rollback, and the deploy it replaced: the replaced
    deploy's commit counts as a failed change (``deploys.dora``)."""

    run = models.OneToOneField(
        DeployRun, on_delete=models.CASCADE, related_name="rollback"
    )
    replaced = models.ForeignKey(
        DeployRun, on_delete=models.CASCADE, related_name="rolled_back_by"
    )

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"deploy {self.run_id} rolls back deploy {self.replaced_id}"
