//! Minimal tonic server answering `GetTenant` from a HashMap: the reference PairDB's own gRPC
//! front end is compared against. One tokio worker thread (current_thread runtime), like one
//! PairDB core.

use std::collections::HashMap;

use tonic::{Request, Response, Status};

pub mod pb {
    tonic::include_proto!("pairdb.coordinator.v1");
}

use pb::coordinator_service_server::{CoordinatorService, CoordinatorServiceServer};

struct Tenants(HashMap<String, pb::GetTenantResponse>);

#[tonic::async_trait]
impl CoordinatorService for Tenants {
    async fn get_tenant(&self, req: Request<pb::GetTenantRequest>) -> Result<Response<pb::GetTenantResponse>, Status> {
        match self.0.get(&req.get_ref().tenant_id) {
            Some(t) => Ok(Response::new(t.clone())),
            None => Err(Status::not_found("tenant not found")),
        }
    }

    async fn write_key_value(&self, _: Request<pb::WriteKeyValueRequest>) -> Result<Response<pb::WriteKeyValueResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn read_key_value(&self, _: Request<pb::ReadKeyValueRequest>) -> Result<Response<pb::ReadKeyValueResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn delete_key_value(&self, _: Request<pb::DeleteKeyValueRequest>) -> Result<Response<pb::DeleteKeyValueResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn create_tenant(&self, _: Request<pb::CreateTenantRequest>) -> Result<Response<pb::CreateTenantResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn update_replication_factor(&self, _: Request<pb::UpdateReplicationFactorRequest>) -> Result<Response<pb::UpdateReplicationFactorResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn add_storage_node(&self, _: Request<pb::AddStorageNodeRequest>) -> Result<Response<pb::AddStorageNodeResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn remove_storage_node(&self, _: Request<pb::RemoveStorageNodeRequest>) -> Result<Response<pb::RemoveStorageNodeResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn get_migration_status(&self, _: Request<pb::GetMigrationStatusRequest>) -> Result<Response<pb::GetMigrationStatusResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn list_storage_nodes(&self, _: Request<pb::ListStorageNodesRequest>) -> Result<Response<pb::ListStorageNodesResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn cancel_migration(&self, _: Request<pb::CancelMigrationRequest>) -> Result<Response<pb::CancelMigrationResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }

    async fn list_migrations(&self, _: Request<pb::ListMigrationsRequest>) -> Result<Response<pb::ListMigrationsResponse>, Status> {
        Err(Status::unimplemented("reference server answers GetTenant only"))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50151".into()).parse()?;
    let mut map = HashMap::new();
    map.insert(
        "default".to_owned(),
        pb::GetTenantResponse { tenant_id: "default".into(), replication_factor: 3, created_at: 1, updated_at: 1, ..Default::default() },
    );
    println!("tonic reference listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(CoordinatorServiceServer::new(Tenants(map)))
        .serve(addr)
        .await?;
    Ok(())
}
