"""The pipeline: the only code that creates builds and deployments and moves their states.

`rules` decides without I/O; `intake`, `builds` and `deployments` read and write the
database, enqueue jobs by name and emit commit statuses through `report`. This package's
names are its public surface: callers use `pipeline.<name>`, not the submodules.
"""

from app.pipeline.audit import ACTIONS as AUDIT_ACTIONS
from app.pipeline.audit import CLI
from app.pipeline.builds import (
    BuildOrder,
    enqueue_build,
    finish_build,
    release_artifacts,
    start_build,
)
from app.pipeline.chat import (
    CHAT_RETRY_INTERVALS,
    ChatFacts,
    chat_events,
    chat_facts,
    queue_chat,
    report_chat,
)
from app.pipeline.common import log, log_many
from app.pipeline.deployments import (
    Artifact,
    DeploymentOrder,
    create_manual_deployment,
    deployment_target,
    find_build,
    known_clone_url,
    last_good_release,
    mark_release_bad,
    release_commits,
    start_deployment,
    update_host,
    update_hosts,
)
from app.pipeline.intake import (
    Answer,
    Received,
    dispatch,
    receive,
    record_attempt,
    refuse,
)
from app.pipeline.operations import (
    OperationError,
    approve,
    cancel,
    cancel_requested,
    configured_environment,
    deploy_by_hand,
    retry,
    rollback,
)
from app.pipeline.order import (
    Waiting,
    finish_deployment,
    queue_next,
    take_turn,
    wait_for_lock,
    waiting,
)
from app.pipeline.paths import ChangesCheck, changes_check, skip_build
from app.pipeline.paths import settle as settle_changes
from app.pipeline.report import (
    BUILD_CONTEXT,
    forge_project,
    remember_forge_project,
    report_build,
    report_deployment,
    send_status_later,
)
from app.pipeline.rules import (
    activation_batches,
    build_description,
    clone_source,
    deployment_description,
    deployment_outcome,
    environments_for,
    failure_state,
    is_local_url,
    lock_name,
    marks_release_bad,
    mask,
    mask_all,
    next_release_id,
    release_id,
    rollback_target,
    settings_hash,
    without_credentials,
)

__all__ = [
    "AUDIT_ACTIONS",
    "BUILD_CONTEXT",
    "CLI",
    "Answer",
    "Artifact",
    "BuildOrder",
    "ChangesCheck",
    "DeploymentOrder",
    "OperationError",
    "Received",
    "Waiting",
    "activation_batches",
    "approve",
    "build_description",
    "cancel",
    "cancel_requested",
    "changes_check",
    "clone_source",
    "configured_environment",
    "create_manual_deployment",
    "deploy_by_hand",
    "deployment_description",
    "deployment_outcome",
    "deployment_target",
    "dispatch",
    "enqueue_build",
    "environments_for",
    "failure_state",
    "find_build",
    "finish_build",
    "finish_deployment",
    "forge_project",
    "is_local_url",
    "known_clone_url",
    "last_good_release",
    "lock_name",
    "log",
    "log_many",
    "mark_release_bad",
    "marks_release_bad",
    "mask",
    "mask_all",
    "next_release_id",
    "queue_next",
    "receive",
    "record_attempt",
    "refuse",
    "release_artifacts",
    "release_commits",
    "release_id",
    "remember_forge_project",
    "report_build",
    "report_deployment",
    "retry",
    "rollback",
    "rollback_target",
    "send_status_later",
    "settings_hash",
    "settle_changes",
    "skip_build",
    "start_build",
    "start_deployment",
    "take_turn",
    "update_host",
    "update_hosts",
    "wait_for_lock",
    "waiting",
    "without_credentials",
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
]
# -- end of issue 9's block ---------------------------------------------------------------------

# -- issue 10 (chat messages) -------------------------------------------------------------------
__all__ += [
    "CHAT_RETRY_INTERVALS",
    "ChatFacts",
    "chat_events",
    "chat_facts",
    "queue_chat",
    "report_chat",
]
# -- end of issue 10's block --------------------------------------------------------------------
