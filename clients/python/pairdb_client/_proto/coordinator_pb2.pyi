from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONSISTENCY_UNSPECIFIED: _ClassVar[Consistency]
    ONE: _ClassVar[Consistency]
    QUORUM: _ClassVar[Consistency]
    ALL: _ClassVar[Consistency]
CONSISTENCY_UNSPECIFIED: Consistency
ONE: Consistency
QUORUM: Consistency
ALL: Consistency

class VectorClockEntry(_message.Message):
    __slots__ = ("coordinator_node_id", "logical_timestamp")
    COORDINATOR_NODE_ID_FIELD_NUMBER: _ClassVar[int]
    LOGICAL_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    coordinator_node_id: str
    logical_timestamp: int
    def __init__(self, coordinator_node_id: _Optional[str] = ..., logical_timestamp: _Optional[int] = ...) -> None: ...

class VectorClock(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[VectorClockEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[VectorClockEntry, _Mapping]]] = ...) -> None: ...

class WriteKeyValueRequest(_message.Message):
    __slots__ = ("tenant_id", "key", "value", "consistency", "idempotency_key", "vector_clock")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_CLOCK_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    key: str
    value: bytes
    consistency: Consistency
    idempotency_key: str
    vector_clock: VectorClock
    def __init__(self, tenant_id: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[bytes] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., idempotency_key: _Optional[str] = ..., vector_clock: _Optional[_Union[VectorClock, _Mapping]] = ...) -> None: ...

class WriteKeyValueResponse(_message.Message):
    __slots__ = ("key", "idempotency_key", "vector_clock", "replica_count", "consistency", "is_duplicate")
    KEY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_CLOCK_FIELD_NUMBER: _ClassVar[int]
    REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    IS_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    key: str
    idempotency_key: str
    vector_clock: VectorClock
    replica_count: int
    consistency: Consistency
    is_duplicate: bool
    def __init__(self, key: _Optional[str] = ..., idempotency_key: _Optional[str] = ..., vector_clock: _Optional[_Union[VectorClock, _Mapping]] = ..., replica_count: _Optional[int] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., is_duplicate: _Optional[bool] = ...) -> None: ...

class ReadKeyValueRequest(_message.Message):
    __slots__ = ("tenant_id", "key", "consistency")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    key: str
    consistency: Consistency
    def __init__(self, tenant_id: _Optional[str] = ..., key: _Optional[str] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class ReadKeyValueResponse(_message.Message):
    __slots__ = ("key", "value", "vector_clock", "replica_count")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    VECTOR_CLOCK_FIELD_NUMBER: _ClassVar[int]
    REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    vector_clock: VectorClock
    replica_count: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., vector_clock: _Optional[_Union[VectorClock, _Mapping]] = ..., replica_count: _Optional[int] = ...) -> None: ...

class DeleteKeyValueRequest(_message.Message):
    __slots__ = ("tenant_id", "key", "consistency", "idempotency_key", "vector_clock")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_CLOCK_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    key: str
    consistency: Consistency
    idempotency_key: str
    vector_clock: VectorClock
    def __init__(self, tenant_id: _Optional[str] = ..., key: _Optional[str] = ..., consistency: _Optional[_Union[Consistency, str]] = ..., idempotency_key: _Optional[str] = ..., vector_clock: _Optional[_Union[VectorClock, _Mapping]] = ...) -> None: ...

class DeleteKeyValueResponse(_message.Message):
    __slots__ = ("key", "vector_clock", "replica_count", "idempotency_key", "is_duplicate")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VECTOR_CLOCK_FIELD_NUMBER: _ClassVar[int]
    REPLICA_COUNT_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    IS_DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    key: str
    vector_clock: VectorClock
    replica_count: int
    idempotency_key: str
    is_duplicate: bool
    def __init__(self, key: _Optional[str] = ..., vector_clock: _Optional[_Union[VectorClock, _Mapping]] = ..., replica_count: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., is_duplicate: _Optional[bool] = ...) -> None: ...

class TenantLimits(_message.Message):
    __slots__ = ("requests_per_second", "bytes_per_second", "max_key_bytes", "max_value_bytes")
    REQUESTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    MAX_KEY_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_VALUE_BYTES_FIELD_NUMBER: _ClassVar[int]
    requests_per_second: int
    bytes_per_second: int
    max_key_bytes: int
    max_value_bytes: int
    def __init__(self, requests_per_second: _Optional[int] = ..., bytes_per_second: _Optional[int] = ..., max_key_bytes: _Optional[int] = ..., max_value_bytes: _Optional[int] = ...) -> None: ...

class CreateTenantRequest(_message.Message):
    __slots__ = ("tenant_id", "replication_factor", "limits")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    replication_factor: int
    limits: TenantLimits
    def __init__(self, tenant_id: _Optional[str] = ..., replication_factor: _Optional[int] = ..., limits: _Optional[_Union[TenantLimits, _Mapping]] = ...) -> None: ...

class CreateTenantResponse(_message.Message):
    __slots__ = ("tenant_id", "replication_factor", "created_at", "limits", "effective_limits")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    replication_factor: int
    created_at: int
    limits: TenantLimits
    effective_limits: TenantLimits
    def __init__(self, tenant_id: _Optional[str] = ..., replication_factor: _Optional[int] = ..., created_at: _Optional[int] = ..., limits: _Optional[_Union[TenantLimits, _Mapping]] = ..., effective_limits: _Optional[_Union[TenantLimits, _Mapping]] = ...) -> None: ...

class UpdateReplicationFactorRequest(_message.Message):
    __slots__ = ("tenant_id", "new_replication_factor")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    NEW_REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    new_replication_factor: int
    def __init__(self, tenant_id: _Optional[str] = ..., new_replication_factor: _Optional[int] = ...) -> None: ...

class UpdateReplicationFactorResponse(_message.Message):
    __slots__ = ("tenant_id", "old_replication_factor", "new_replication_factor", "migration_id", "updated_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    OLD_REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    NEW_REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    old_replication_factor: int
    new_replication_factor: int
    migration_id: str
    updated_at: int
    def __init__(self, tenant_id: _Optional[str] = ..., old_replication_factor: _Optional[int] = ..., new_replication_factor: _Optional[int] = ..., migration_id: _Optional[str] = ..., updated_at: _Optional[int] = ...) -> None: ...

class GetTenantRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class GetTenantResponse(_message.Message):
    __slots__ = ("tenant_id", "replication_factor", "created_at", "updated_at", "limits", "effective_limits")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    replication_factor: int
    created_at: int
    updated_at: int
    limits: TenantLimits
    effective_limits: TenantLimits
    def __init__(self, tenant_id: _Optional[str] = ..., replication_factor: _Optional[int] = ..., created_at: _Optional[int] = ..., updated_at: _Optional[int] = ..., limits: _Optional[_Union[TenantLimits, _Mapping]] = ..., effective_limits: _Optional[_Union[TenantLimits, _Mapping]] = ...) -> None: ...

class UpdateTenantLimitsRequest(_message.Message):
    __slots__ = ("tenant_id", "limits")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    limits: TenantLimits
    def __init__(self, tenant_id: _Optional[str] = ..., limits: _Optional[_Union[TenantLimits, _Mapping]] = ...) -> None: ...

class UpdateTenantLimitsResponse(_message.Message):
    __slots__ = ("tenant_id", "limits", "effective_limits", "updated_at")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    EFFECTIVE_LIMITS_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    limits: TenantLimits
    effective_limits: TenantLimits
    updated_at: int
    def __init__(self, tenant_id: _Optional[str] = ..., limits: _Optional[_Union[TenantLimits, _Mapping]] = ..., effective_limits: _Optional[_Union[TenantLimits, _Mapping]] = ..., updated_at: _Optional[int] = ...) -> None: ...

class AddStorageNodeRequest(_message.Message):
    __slots__ = ("node_id", "host", "port", "virtual_nodes")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_NODES_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    host: str
    port: int
    virtual_nodes: int
    def __init__(self, node_id: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., virtual_nodes: _Optional[int] = ...) -> None: ...

class AddStorageNodeResponse(_message.Message):
    __slots__ = ("node_id", "migration_id", "message")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    migration_id: str
    message: str
    def __init__(self, node_id: _Optional[str] = ..., migration_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RemoveStorageNodeRequest(_message.Message):
    __slots__ = ("node_id", "force")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    force: bool
    def __init__(self, node_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class RemoveStorageNodeResponse(_message.Message):
    __slots__ = ("node_id", "migration_id", "message")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    migration_id: str
    message: str
    def __init__(self, node_id: _Optional[str] = ..., migration_id: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class GetMigrationStatusRequest(_message.Message):
    __slots__ = ("migration_id",)
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    def __init__(self, migration_id: _Optional[str] = ...) -> None: ...

class MigrationProgress(_message.Message):
    __slots__ = ("keys_migrated", "total_keys", "percentage")
    KEYS_MIGRATED_FIELD_NUMBER: _ClassVar[int]
    TOTAL_KEYS_FIELD_NUMBER: _ClassVar[int]
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    keys_migrated: int
    total_keys: int
    percentage: float
    def __init__(self, keys_migrated: _Optional[int] = ..., total_keys: _Optional[int] = ..., percentage: _Optional[float] = ...) -> None: ...

class GetMigrationStatusResponse(_message.Message):
    __slots__ = ("migration_id", "migration_type", "node_id", "status", "progress", "started_at", "completed_at", "error_message", "stage", "bytes_migrated", "bytes_per_second", "keys_per_second", "estimated_completion_at", "blocked_on", "segments_done", "segments_total")
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    MIGRATION_TYPE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    BYTES_MIGRATED_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    KEYS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COMPLETION_AT_FIELD_NUMBER: _ClassVar[int]
    BLOCKED_ON_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_DONE_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    migration_type: str
    node_id: str
    status: str
    progress: MigrationProgress
    started_at: int
    completed_at: int
    error_message: str
    stage: str
    bytes_migrated: int
    bytes_per_second: float
    keys_per_second: float
    estimated_completion_at: int
    blocked_on: str
    segments_done: int
    segments_total: int
    def __init__(self, migration_id: _Optional[str] = ..., migration_type: _Optional[str] = ..., node_id: _Optional[str] = ..., status: _Optional[str] = ..., progress: _Optional[_Union[MigrationProgress, _Mapping]] = ..., started_at: _Optional[int] = ..., completed_at: _Optional[int] = ..., error_message: _Optional[str] = ..., stage: _Optional[str] = ..., bytes_migrated: _Optional[int] = ..., bytes_per_second: _Optional[float] = ..., keys_per_second: _Optional[float] = ..., estimated_completion_at: _Optional[int] = ..., blocked_on: _Optional[str] = ..., segments_done: _Optional[int] = ..., segments_total: _Optional[int] = ...) -> None: ...

class CancelMigrationRequest(_message.Message):
    __slots__ = ("migration_id",)
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    def __init__(self, migration_id: _Optional[str] = ...) -> None: ...

class CancelMigrationResponse(_message.Message):
    __slots__ = ("migration_id", "status", "stage", "message")
    MIGRATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    migration_id: str
    status: str
    stage: str
    message: str
    def __init__(self, migration_id: _Optional[str] = ..., status: _Optional[str] = ..., stage: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ListMigrationsRequest(_message.Message):
    __slots__ = ("limit",)
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    limit: int
    def __init__(self, limit: _Optional[int] = ...) -> None: ...

class ListMigrationsResponse(_message.Message):
    __slots__ = ("migrations",)
    MIGRATIONS_FIELD_NUMBER: _ClassVar[int]
    migrations: _containers.RepeatedCompositeFieldContainer[GetMigrationStatusResponse]
    def __init__(self, migrations: _Optional[_Iterable[_Union[GetMigrationStatusResponse, _Mapping]]] = ...) -> None: ...

class ListStorageNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StorageNodeInfo(_message.Message):
    __slots__ = ("node_id", "host", "port", "status", "virtual_nodes", "keys_count", "disk_usage_percent")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_NODES_FIELD_NUMBER: _ClassVar[int]
    KEYS_COUNT_FIELD_NUMBER: _ClassVar[int]
    DISK_USAGE_PERCENT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    host: str
    port: int
    status: str
    virtual_nodes: int
    keys_count: int
    disk_usage_percent: float
    def __init__(self, node_id: _Optional[str] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., status: _Optional[str] = ..., virtual_nodes: _Optional[int] = ..., keys_count: _Optional[int] = ..., disk_usage_percent: _Optional[float] = ...) -> None: ...

class ListStorageNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[StorageNodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[StorageNodeInfo, _Mapping]]] = ...) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("token_id", "tenant_id", "role", "created_at_us", "revoked_at_us")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_US_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_US_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    tenant_id: str
    role: str
    created_at_us: int
    revoked_at_us: int
    def __init__(self, token_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., role: _Optional[str] = ..., created_at_us: _Optional[int] = ..., revoked_at_us: _Optional[int] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("tenant_id", "role")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    role: str
    def __init__(self, tenant_id: _Optional[str] = ..., role: _Optional[str] = ...) -> None: ...

class CreateTokenResponse(_message.Message):
    __slots__ = ("token", "info")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    token: str
    info: TokenInfo
    def __init__(self, token: _Optional[str] = ..., info: _Optional[_Union[TokenInfo, _Mapping]] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ("tenant_id",)
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    def __init__(self, tenant_id: _Optional[str] = ...) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class RevokeTokenResponse(_message.Message):
    __slots__ = ("info",)
    INFO_FIELD_NUMBER: _ClassVar[int]
    info: TokenInfo
    def __init__(self, info: _Optional[_Union[TokenInfo, _Mapping]] = ...) -> None: ...
