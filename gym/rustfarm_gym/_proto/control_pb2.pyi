from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SpecRequest(_message.Message):
    __slots__ = ("farm", "action_space", "obs_version")
    FARM_FIELD_NUMBER: _ClassVar[int]
    ACTION_SPACE_FIELD_NUMBER: _ClassVar[int]
    OBS_VERSION_FIELD_NUMBER: _ClassVar[int]
    farm: str
    action_space: str
    obs_version: int
    def __init__(self, farm: _Optional[str] = ..., action_space: _Optional[str] = ..., obs_version: _Optional[int] = ...) -> None: ...

class EnvSpec(_message.Message):
    __slots__ = ("obs_version", "observation_names", "observation_low", "observation_high", "action_meanings", "control_interval_s", "episode_steps", "backend", "server_version", "scenarios", "policies")
    OBS_VERSION_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_NAMES_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_LOW_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_HIGH_FIELD_NUMBER: _ClassVar[int]
    ACTION_MEANINGS_FIELD_NUMBER: _ClassVar[int]
    CONTROL_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    EPISODE_STEPS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SERVER_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCENARIOS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    obs_version: int
    observation_names: _containers.RepeatedScalarFieldContainer[str]
    observation_low: _containers.RepeatedScalarFieldContainer[float]
    observation_high: _containers.RepeatedScalarFieldContainer[float]
    action_meanings: _containers.RepeatedScalarFieldContainer[str]
    control_interval_s: float
    episode_steps: int
    backend: str
    server_version: str
    scenarios: _containers.RepeatedScalarFieldContainer[str]
    policies: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, obs_version: _Optional[int] = ..., observation_names: _Optional[_Iterable[str]] = ..., observation_low: _Optional[_Iterable[float]] = ..., observation_high: _Optional[_Iterable[float]] = ..., action_meanings: _Optional[_Iterable[str]] = ..., control_interval_s: _Optional[float] = ..., episode_steps: _Optional[int] = ..., backend: _Optional[str] = ..., server_version: _Optional[str] = ..., scenarios: _Optional[_Iterable[str]] = ..., policies: _Optional[_Iterable[str]] = ...) -> None: ...

class ResetRequest(_message.Message):
    __slots__ = ("env_id", "seed", "scenario", "scenario_yaml", "options")
    class OptionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_FIELD_NUMBER: _ClassVar[int]
    SCENARIO_YAML_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    seed: int
    scenario: str
    scenario_yaml: str
    options: _containers.ScalarMap[str, str]
    def __init__(self, env_id: _Optional[str] = ..., seed: _Optional[int] = ..., scenario: _Optional[str] = ..., scenario_yaml: _Optional[str] = ..., options: _Optional[_Mapping[str, str]] = ...) -> None: ...

class StepRequest(_message.Message):
    __slots__ = ("env_id", "action")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    action: int
    def __init__(self, env_id: _Optional[str] = ..., action: _Optional[int] = ...) -> None: ...

class StepBatchRequest(_message.Message):
    __slots__ = ("steps", "auto_reset", "env_ids", "actions", "packed", "packed_info")
    STEPS_FIELD_NUMBER: _ClassVar[int]
    AUTO_RESET_FIELD_NUMBER: _ClassVar[int]
    ENV_IDS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    PACKED_INFO_FIELD_NUMBER: _ClassVar[int]
    steps: _containers.RepeatedCompositeFieldContainer[StepRequest]
    auto_reset: bool
    env_ids: _containers.RepeatedScalarFieldContainer[str]
    actions: _containers.RepeatedScalarFieldContainer[int]
    packed: bool
    packed_info: bool
    def __init__(self, steps: _Optional[_Iterable[_Union[StepRequest, _Mapping]]] = ..., auto_reset: _Optional[bool] = ..., env_ids: _Optional[_Iterable[str]] = ..., actions: _Optional[_Iterable[int]] = ..., packed: _Optional[bool] = ..., packed_info: _Optional[bool] = ...) -> None: ...

class StepBatchReply(_message.Message):
    __slots__ = ("replies", "packed")
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    PACKED_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[StepReply]
    packed: PackedSteps
    def __init__(self, replies: _Optional[_Iterable[_Union[StepReply, _Mapping]]] = ..., packed: _Optional[_Union[PackedSteps, _Mapping]] = ...) -> None: ...

class PackedSteps(_message.Message):
    __slots__ = ("obs_dim", "observations", "rewards", "terminated", "truncated", "info", "ended", "ended_replies")
    OBS_DIM_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    REWARDS_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    ENDED_FIELD_NUMBER: _ClassVar[int]
    ENDED_REPLIES_FIELD_NUMBER: _ClassVar[int]
    obs_dim: int
    observations: _containers.RepeatedScalarFieldContainer[float]
    rewards: _containers.RepeatedScalarFieldContainer[float]
    terminated: _containers.RepeatedScalarFieldContainer[bool]
    truncated: _containers.RepeatedScalarFieldContainer[bool]
    info: _containers.RepeatedScalarFieldContainer[float]
    ended: _containers.RepeatedScalarFieldContainer[int]
    ended_replies: _containers.RepeatedCompositeFieldContainer[StepReply]
    def __init__(self, obs_dim: _Optional[int] = ..., observations: _Optional[_Iterable[float]] = ..., rewards: _Optional[_Iterable[float]] = ..., terminated: _Optional[_Iterable[bool]] = ..., truncated: _Optional[_Iterable[bool]] = ..., info: _Optional[_Iterable[float]] = ..., ended: _Optional[_Iterable[int]] = ..., ended_replies: _Optional[_Iterable[_Union[StepReply, _Mapping]]] = ...) -> None: ...

class RunSummary(_message.Message):
    __slots__ = ("tasks", "completed", "unfinished", "qos", "latency_p50_s", "latency_p95_s", "latency_p99_s", "replica_seconds", "mean_replicas", "max_replicas", "scaling_actions", "reversals", "drain_s")
    TASKS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    UNFINISHED_FIELD_NUMBER: _ClassVar[int]
    QOS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_S_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P99_S_FIELD_NUMBER: _ClassVar[int]
    REPLICA_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MEAN_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLICAS_FIELD_NUMBER: _ClassVar[int]
    SCALING_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    REVERSALS_FIELD_NUMBER: _ClassVar[int]
    DRAIN_S_FIELD_NUMBER: _ClassVar[int]
    tasks: int
    completed: int
    unfinished: int
    qos: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    replica_seconds: float
    mean_replicas: float
    max_replicas: int
    scaling_actions: int
    reversals: int
    drain_s: float
    def __init__(self, tasks: _Optional[int] = ..., completed: _Optional[int] = ..., unfinished: _Optional[int] = ..., qos: _Optional[float] = ..., latency_p50_s: _Optional[float] = ..., latency_p95_s: _Optional[float] = ..., latency_p99_s: _Optional[float] = ..., replica_seconds: _Optional[float] = ..., mean_replicas: _Optional[float] = ..., max_replicas: _Optional[int] = ..., scaling_actions: _Optional[int] = ..., reversals: _Optional[int] = ..., drain_s: _Optional[float] = ...) -> None: ...

class StepInfo(_message.Message):
    __slots__ = ("time_s", "desired", "ready", "starting", "backlog", "in_flight", "window_qos", "arrivals", "completions", "summary")
    TIME_S_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    STARTING_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_QOS_FIELD_NUMBER: _ClassVar[int]
    ARRIVALS_FIELD_NUMBER: _ClassVar[int]
    COMPLETIONS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    time_s: float
    desired: int
    ready: int
    starting: int
    backlog: float
    in_flight: float
    window_qos: float
    arrivals: float
    completions: float
    summary: RunSummary
    def __init__(self, time_s: _Optional[float] = ..., desired: _Optional[int] = ..., ready: _Optional[int] = ..., starting: _Optional[int] = ..., backlog: _Optional[float] = ..., in_flight: _Optional[float] = ..., window_qos: _Optional[float] = ..., arrivals: _Optional[float] = ..., completions: _Optional[float] = ..., summary: _Optional[_Union[RunSummary, _Mapping]] = ...) -> None: ...

class StepReply(_message.Message):
    __slots__ = ("env_id", "observation", "reward", "terminated", "truncated", "info", "final_observation")
    ENV_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    FINAL_OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    env_id: str
    observation: _containers.RepeatedScalarFieldContainer[float]
    reward: float
    terminated: bool
    truncated: bool
    info: StepInfo
    final_observation: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, env_id: _Optional[str] = ..., observation: _Optional[_Iterable[float]] = ..., reward: _Optional[float] = ..., terminated: _Optional[bool] = ..., truncated: _Optional[bool] = ..., info: _Optional[_Union[StepInfo, _Mapping]] = ..., final_observation: _Optional[_Iterable[float]] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("farm",)
    FARM_FIELD_NUMBER: _ClassVar[int]
    farm: str
    def __init__(self, farm: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("farm", "at_us", "observation", "policy", "action", "outputs", "proposed", "desired", "previous", "note", "trigger")
    FARM_FIELD_NUMBER: _ClassVar[int]
    AT_US_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_FIELD_NUMBER: _ClassVar[int]
    DESIRED_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    TRIGGER_FIELD_NUMBER: _ClassVar[int]
    farm: str
    at_us: int
    observation: _containers.RepeatedScalarFieldContainer[float]
    policy: str
    action: int
    outputs: _containers.RepeatedScalarFieldContainer[float]
    proposed: int
    desired: int
    previous: int
    note: str
    trigger: str
    def __init__(self, farm: _Optional[str] = ..., at_us: _Optional[int] = ..., observation: _Optional[_Iterable[float]] = ..., policy: _Optional[str] = ..., action: _Optional[int] = ..., outputs: _Optional[_Iterable[float]] = ..., proposed: _Optional[int] = ..., desired: _Optional[int] = ..., previous: _Optional[int] = ..., note: _Optional[str] = ..., trigger: _Optional[str] = ...) -> None: ...
