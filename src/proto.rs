//! Generated protobuf types (prost output from `proto/`, never edited by hand) and the encoded
//! file descriptor set that gRPC server reflection serves.

#![allow(clippy::all, missing_docs)]

/// `pairdb.coordinator.v1`: the client-facing contract.
pub mod coordinator {
    include!(concat!(env!("OUT_DIR"), "/pairdb.coordinator.v1.rs"));
}

/// `pairdb.storage.v1`: the coordinator-to-storage-node contract.
pub mod storage {
    include!(concat!(env!("OUT_DIR"), "/pairdb.storage.v1.rs"));
}

/// `grpc.health.v1`: standard health checking.
pub mod health {
    include!(concat!(env!("OUT_DIR"), "/grpc.health.v1.rs"));
}

/// `grpc.reflection.v1` and `v1alpha`: standard server reflection.
pub mod reflection {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/grpc.reflection.v1.rs"));
    }
    pub mod v1alpha {
        include!(concat!(env!("OUT_DIR"), "/grpc.reflection.v1alpha.rs"));
    }
}

/// Every `.proto` file of the crate, as an encoded `google.protobuf.FileDescriptorSet`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
