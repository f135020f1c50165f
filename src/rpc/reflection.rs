//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`), so that generic tools such as
//! `grpcurl` and `grpc_cli` can list and call PairDB's services without the `.proto` files.
//!
//! The two protocol versions are the same messages under two package names, so one
//! implementation decodes and answers both with the `v1` types. Answers come from the file
//! descriptor set that `build.rs` embeds; the index is built once per core at start-up.

use std::rc::Rc;

use ahash::AHashMap;
use bytes::Bytes;
use prost::Message;

use crate::{
    proto::{
        reflection::v1::{
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
            ErrorResponse, FileDescriptorResponse, ListServiceResponse, ServerReflectionRequest,
            ServerReflectionResponse, ServiceResponse,
        },
        FILE_DESCRIPTOR_SET,
    },
    rpc::{
        server::{Router, StreamingCall},
        status::{Code, Status},
    },
};

/// Symbols and files of the embedded descriptor set.
struct Index {
    /// File name -> encoded `FileDescriptorProto`.
    files: AHashMap<String, Bytes>,
    /// File name -> the files it imports.
    deps: AHashMap<String, Vec<String>>,
    /// Fully-qualified symbol (package.Message, package.Service, package.Service.Method, ...) -> file.
    symbols: AHashMap<String, String>,
    /// Services this server hosts.
    services: Vec<String>,
}

impl Index {
    fn build(services: Vec<String>) -> Index {
        // The set is produced by build.rs from our own protos; failing to decode it is a build bug.
        let set = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("embedded descriptor set decodes");
        let mut index = Index {
            files: AHashMap::new(),
            deps: AHashMap::new(),
            symbols: AHashMap::new(),
            services,
        };
        for file in set.file {
            let name = file.name().to_owned();
            let package = file.package();
            let prefix = if package.is_empty() { String::new() } else { format!("{package}.") };
            for msg in &file.message_type {
                add_message(&mut index.symbols, &prefix, msg, &name);
            }
            for e in &file.enum_type {
                index.symbols.insert(format!("{prefix}{}", e.name()), name.clone());
            }
            for svc in &file.service {
                let svc_name = format!("{prefix}{}", svc.name());
                for m in &svc.method {
                    index.symbols.insert(format!("{svc_name}.{}", m.name()), name.clone());
                }
                index.symbols.insert(svc_name, name.clone());
            }
            index.deps.insert(name.clone(), file.dependency.clone());
            index.files.insert(name, Bytes::from(file.encode_to_vec()));
        }
        index
    }

    /// `file` and, transitively, everything it imports.
    fn with_deps(&self, file: &str) -> Vec<Bytes> {
        let mut out = Vec::new();
        let mut seen = Vec::new();
        let mut stack = vec![file.to_owned()];
        while let Some(f) = stack.pop() {
            if seen.contains(&f) {
                continue;
            }
            if let Some(bytes) = self.files.get(&f) {
                out.push(bytes.clone());
            }
            if let Some(deps) = self.deps.get(&f) {
                stack.extend(deps.iter().cloned());
            }
            seen.push(f);
        }
        out
    }

    fn answer(&self, req: ServerReflectionRequest) -> ServerReflectionResponse {
        let response = match &req.message_request {
            Some(MessageRequest::ListServices(_)) => {
                MessageResponse::ListServicesResponse(ListServiceResponse {
                    service: self
                        .services
                        .iter()
                        .map(|name| ServiceResponse { name: name.clone() })
                        .collect(),
                })
            }
            Some(MessageRequest::FileByFilename(name)) => match self.files.contains_key(name) {
                true => files(self.with_deps(name)),
                false => not_found(format!("file {name:?} not found")),
            },
            Some(MessageRequest::FileContainingSymbol(symbol)) => {
                match self.symbols.get(symbol.trim_start_matches('.')) {
                    Some(file) => files(self.with_deps(file)),
                    None => not_found(format!("symbol {symbol:?} not found")),
                }
            }
            Some(MessageRequest::FileContainingExtension(_))
            | Some(MessageRequest::AllExtensionNumbersOfType(_)) => {
                not_found("PairDB's protos declare no extensions".to_owned())
            }
            None => MessageResponse::ErrorResponse(ErrorResponse {
                error_code: Code::INVALID_ARGUMENT.0,
                error_message: "empty reflection request".into(),
            }),
        };
        ServerReflectionResponse {
            valid_host: req.host.clone(),
            original_request: Some(req),
            message_response: Some(response),
        }
    }
}

fn add_message(
    symbols: &mut AHashMap<String, String>,
    prefix: &str,
    msg: &prost_types::DescriptorProto,
    file: &str,
) {
    let full = format!("{prefix}{}", msg.name());
    for nested in &msg.nested_type {
        add_message(symbols, &format!("{full}."), nested, file);
    }
    for e in &msg.enum_type {
        symbols.insert(format!("{full}.{}", e.name()), file.to_owned());
    }
    symbols.insert(full, file.to_owned());
}

fn files(file_descriptor_proto: Vec<Bytes>) -> MessageResponse {
    MessageResponse::FileDescriptorResponse(FileDescriptorResponse { file_descriptor_proto })
}

fn not_found(error_message: String) -> MessageResponse {
    MessageResponse::ErrorResponse(ErrorResponse { error_code: Code::NOT_FOUND.0, error_message })
}

const PATHS: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Adds both reflection services to `router`, listing every service on it (and themselves).
/// Call it last, after every other service was added.
pub fn add(router: Router) -> Router {
    let mut services = router.services();
    services.extend([
        "grpc.reflection.v1.ServerReflection".to_owned(),
        "grpc.reflection.v1alpha.ServerReflection".to_owned(),
    ]);
    services.sort();
    services.dedup();
    let index = Rc::new(Index::build(services));
    let mut router = router;
    for path in PATHS {
        let index = index.clone();
        router = router.streaming(path, move |call| serve(index.clone(), call));
    }
    router
}

async fn serve(index: Rc<Index>, mut call: StreamingCall) {
    loop {
        match call.next_message().await {
            Ok(Some(bytes)) => {
                let reply = match ServerReflectionRequest::decode(bytes) {
                    Ok(req) => index.answer(req),
                    Err(e) => {
                        return call.finish(Status::invalid_argument(format!(
                            "bad ServerReflectionRequest: {e}"
                        )));
                    }
                };
                if call.send_message(&reply).is_err() {
                    return;
                }
            }
            Ok(None) => return call.finish(Status::new(Code::OK, "")),
            Err(status) => return call.finish(status),
        }
    }
}
