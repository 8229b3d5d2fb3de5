"""Optional dispatch inputs a team's copy of the deploy workflow does not declare."""

from __future__ import annotations

from django.db import models

from deploys.models.environments import Environment


class UndeclaredInput(models.Model):
    """An optional input the environment's workflow file lacks, as GitHub said.

    Learned from a 422 (``Unexpected inputs provided``); later dispatches leave the
    input out instead of paying that refusal each time. Kept per workflow file, so
    pointing the environment at another file starts afresh; the engine trusts a row
    for a bounded time only (``deploys.engine.inputs.REMEMBERED_FOR``), since only
    sending the input again shows that the file has gained it.
    """

    environment = models.ForeignKey(
        Environment, on_delete=models.CASCADE, related_name="undeclared_inputs"
    )
    workflow_file = models.CharField(max_length=200)
    name = models.CharField(max_length=100)
    # When GitHub last refused the input for this file.
    refused_at = models.DateTimeField()

    class Meta:
        ordering = ["environment", "workflow_file", "name", "pk"]
        constraints = [
            # Its index also serves the dispatch's look-up by environment and file.
            models.UniqueConstraint(
                fields=["environment", "workflow_file", "name"],
                name="undeclared_input_once_per_file",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_file} lacks input {self.name}"
