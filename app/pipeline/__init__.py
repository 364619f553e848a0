"""The pipeline: the only code that creates builds and deployments and moves their states.

`rules` decides without I/O; `intake`, `builds` and `deployments` read and write the
database, enqueue jobs by name and emit commit statuses through `report`. This package's
names are its public surface: callers use `pipeline.<name>`, not the submodules.
"""

from app.pipeline.builds import (
    BuildOrder,
    enqueue_build,
    finish_build,
    release_artifacts,
    start_build,
)
from app.pipeline.common import log, log_many
from app.pipeline.deployments import (
    Artifact,
    DeploymentOrder,
    deployment_target,
    finish_deployment,
    start_deployment,
    update_host,
)
from app.pipeline.intake import Answer, receive
from app.pipeline.report import BUILD_CONTEXT, report_build, report_deployment
from app.pipeline.rules import (
    build_description,
    deployment_description,
    environments_for,
    lock_name,
    mask,
    next_release_id,
    release_id,
    settings_hash,
)

__all__ = [
    "BUILD_CONTEXT",
    "Answer",
    "Artifact",
    "BuildOrder",
    "DeploymentOrder",
    "build_description",
    "deployment_description",
    "deployment_target",
    "enqueue_build",
    "environments_for",
    "finish_build",
    "finish_deployment",
    "lock_name",
    "log",
    "log_many",
    "mask",
    "next_release_id",
    "receive",
    "release_artifacts",
    "release_id",
    "report_build",
    "report_deployment",
    "settings_hash",
    "start_build",
    "start_deployment",
    "update_host",
]
