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
    create_manual_deployment,
    deploy_by_hand,
    deployment_target,
    find_build,
    finish_deployment,
    known_clone_url,
    last_good_release,
    mark_release_bad,
    queue_next,
    release_commits,
    start_deployment,
    update_host,
    update_hosts,
    wait_for_lock,
)
from app.pipeline.intake import (
    Answer,
    Received,
    dispatch,
    receive,
    record_attempt,
    refuse,
)
from app.pipeline.paths import ChangesCheck, changes_check, skip_build
from app.pipeline.paths import settle as settle_changes
from app.pipeline.report import BUILD_CONTEXT, report_build, report_deployment
from app.pipeline.rules import (
    activation_batches,
    build_description,
    deployment_description,
    environments_for,
    failure_state,
    lock_name,
    marks_release_bad,
    mask,
    next_release_id,
    release_id,
    rollback_target,
    settings_hash,
)

__all__ = [
    "BUILD_CONTEXT",
    "Answer",
    "Artifact",
    "BuildOrder",
    "ChangesCheck",
    "DeploymentOrder",
    "Received",
    "activation_batches",
    "build_description",
    "changes_check",
    "create_manual_deployment",
    "deploy_by_hand",
    "deployment_description",
    "deployment_target",
    "dispatch",
    "enqueue_build",
    "environments_for",
    "failure_state",
    "find_build",
    "finish_build",
    "finish_deployment",
    "known_clone_url",
    "last_good_release",
    "lock_name",
    "log",
    "log_many",
    "mark_release_bad",
    "marks_release_bad",
    "mask",
    "next_release_id",
    "queue_next",
    "receive",
    "record_attempt",
    "refuse",
    "release_artifacts",
    "release_commits",
    "release_id",
    "report_build",
    "report_deployment",
    "rollback_target",
    "settings_hash",
    "settle_changes",
    "skip_build",
    "start_build",
    "start_deployment",
    "update_host",
    "update_hosts",
    "wait_for_lock",
]

# -- issue 9 (recovery from a dead worker) ------------------------------------------------------
from app.pipeline.recovery import (
    WORKER_STOPPED,
    Abandoned,
    HostProgress,
    RunningDeployment,
    abandoned_builds,
    abandoned_deployments,
    abandoned_in,
    build_liveness_key,
    end_abandoned_deployment,
    enqueue_recovery,
    fail_abandoned_build,
    may_have_switched,
    running_builds,
    running_deployments,
    running_target,
)

__all__ += [
    "WORKER_STOPPED",
    "Abandoned",
    "HostProgress",
    "RunningDeployment",
    "abandoned_builds",
    "abandoned_deployments",
    "abandoned_in",
    "build_liveness_key",
    "end_abandoned_deployment",
    "enqueue_recovery",
    "fail_abandoned_build",
    "may_have_switched",
    "running_builds",
    "running_deployments",
    "running_target",
]
# -- end of issue 9's block ---------------------------------------------------------------------
