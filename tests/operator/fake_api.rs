//! An in-memory Kubernetes API server for operator tests and benchmarks.
//!
//! It is a `tower::Service` handed to `kube::Client::new`, so the reconciler runs its real
//! request code (URLs, query strings, patch types, bodies) against it. It keeps objects as
//! JSON, understands get / list (label selectors) / create / delete (preconditions,
//! finalizers, owner-reference garbage collection) / patch (server-side apply, merge, JSON
//! patch) and the `status` subresource, records every request, and can inject failures.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// One request the fake served.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: Method,
    /// Path without query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Content-Type header.
    pub content_type: Option<String>,
    /// Parsed JSON body, if any.
    pub body: Option<Value>,
}

struct Watcher {
    collection: String,
    all_namespaces: bool,
    selector: String,
    tx: tokio::sync::mpsc::UnboundedSender<Bytes>,
}

/// Whether `coll` belongs to a request for `target` (all namespaces when `all_namespaces`).
fn in_scope(target: &str, all_namespaces: bool, coll: &str) -> bool {
    if !all_namespaces {
        return coll == target;
    }
    let suffix = target.rsplit('/').next().unwrap_or_default();
    let prefix = target.trim_end_matches(suffix);
    coll == target
        || (coll.starts_with(&format!("{prefix}namespaces/"))
            && coll.ends_with(&format!("/{suffix}")))
}

struct InjectedFailure {
    method: Method,
    path_contains: String,
    code: u16,
    remaining: usize,
}

#[derive(Default)]
struct State {
    /// collection path (`/api/v1/namespaces/ns/pods`) -> name -> object
    collections: BTreeMap<String, BTreeMap<String, Value>>,
    /// collection -> `key=value` label -> names (keeps selector lists cheap at 10^4 pods)
    label_index: HashMap<String, HashMap<String, BTreeSet<String>>>,
    /// owner UID -> (collection, name) of the objects it owns (garbage collection)
    owner_index: HashMap<String, BTreeSet<(String, String)>>,
    next_uid: u64,
    resource_version: u64,
    requests: Vec<RecordedRequest>,
    record: bool,
    failures: Vec<InjectedFailure>,
    graceful_pod_deletion: bool,
    served: u64,
    drop_events: bool,
    watchers: Vec<Watcher>,
}

/// The fake API server (cheap to clone; clones share state).
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

struct Target {
    collection: String,
    /// `namespaces/*` was absent: list across namespaces.
    all_namespaces: bool,
    name: Option<String>,
    subresource: Option<String>,
    namespace: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix_len, prefix) = match *segs.first()? {
        "api" => (2, format!("/api/{}", segs.get(1)?)),
        "apis" => (3, format!("/apis/{}/{}", segs.get(1)?, segs.get(2)?)),
        _ => return None,
    };
    let rest = segs.get(prefix_len..)?;
    if rest.first() == Some(&"namespaces") && rest.len() >= 3 {
        Some(Target {
            collection: format!("{prefix}/namespaces/{}/{}", rest[1], rest[2]),
            all_namespaces: false,
            name: rest.get(3).map(|s| (*s).to_owned()),
            subresource: rest.get(4).map(|s| (*s).to_owned()),
            namespace: Some(rest[1].to_owned()),
        })
    } else {
        Some(Target {
            collection: format!("{prefix}/{}", rest.first()?),
            all_namespaces: true,
            name: rest.get(1).map(|s| (*s).to_owned()),
            subresource: rest.get(2).map(|s| (*s).to_owned()),
            namespace: None,
        })
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn matches_selector(obj: &Value, selector: &str) -> bool {
    let labels = obj.pointer("/metadata/labels");
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        if let Some((k, v)) = term.split_once("!=") {
            label(k.trim()) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            label(k.trim().trim_end_matches('=')) == Some(v.trim())
        } else {
            label(term.trim()).is_some()
        }
    })
}

fn status_body(code: u16, reason: &str, message: String) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

type Body = BoxBody<Bytes, Infallible>;

fn respond(code: u16, bytes: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(bytes)).boxed());
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

fn now_string() -> String {
    Timestamp::now().to_string()
}

impl State {
    fn bump(&mut self) -> String {
        self.resource_version += 1;
        self.resource_version.to_string()
    }

    fn init_object(&mut self, obj: &mut Value, namespace: Option<&str>) -> Result<String, String> {
        let rv = self.bump();
        self.next_uid += 1;
        let uid = format!("00000000-0000-0000-0000-{:012}", self.next_uid);
        let meta = obj
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or("object has no metadata")?;
        if meta.get("name").and_then(Value::as_str).is_none() {
            let prefix = meta
                .get("generateName")
                .and_then(Value::as_str)
                .ok_or("object has neither name nor generateName")?
                .to_owned();
            meta.insert(
                "name".into(),
                json!(format!("{prefix}{:05}", self.next_uid)),
            );
        }
        if let Some(ns) = namespace {
            meta.insert("namespace".into(), json!(ns));
        }
        meta.insert("uid".into(), json!(uid));
        meta.insert("resourceVersion".into(), json!(rv));
        meta.insert("creationTimestamp".into(), json!(now_string()));
        meta.insert("generation".into(), json!(1));
        meta.get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "no name".to_owned())
    }

    fn labels_of(obj: &Value) -> Vec<String> {
        obj.pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|v| format!("{k}={v}")))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn owners_of(obj: &Value) -> Vec<String> {
        obj.pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stores `obj` under `collection/name`, keeping the indexes in sync; tells watchers.
    fn put(&mut self, collection: &str, name: &str, obj: Value) {
        let existed = self.unindex(collection, name).is_some();
        let by_label = self.label_index.entry(collection.to_owned()).or_default();
        for label in Self::labels_of(&obj) {
            by_label.entry(label).or_default().insert(name.to_owned());
        }
        for owner in Self::owners_of(&obj) {
            self.owner_index
                .entry(owner)
                .or_default()
                .insert((collection.to_owned(), name.to_owned()));
        }
        self.notify(collection, if existed { "MODIFIED" } else { "ADDED" }, &obj);
        self.collections
            .entry(collection.to_owned())
            .or_default()
            .insert(name.to_owned(), obj);
    }

    /// Removes `collection/name` without garbage collection; tells watchers.
    fn take(&mut self, collection: &str, name: &str) -> Option<Value> {
        let obj = self.unindex(collection, name)?;
        self.notify(collection, "DELETED", &obj);
        Some(obj)
    }

    fn unindex(&mut self, collection: &str, name: &str) -> Option<Value> {
        let obj = self.collections.get_mut(collection)?.remove(name)?;
        if let Some(by_label) = self.label_index.get_mut(collection) {
            for label in Self::labels_of(&obj) {
                if let Some(names) = by_label.get_mut(&label) {
                    names.remove(name);
                }
            }
        }
        for owner in Self::owners_of(&obj) {
            if let Some(owned) = self.owner_index.get_mut(&owner) {
                owned.remove(&(collection.to_owned(), name.to_owned()));
            }
        }
        Some(obj)
    }

    fn notify(&mut self, collection: &str, kind: &str, obj: &Value) {
        if self.watchers.is_empty() {
            return;
        }
        self.watchers.retain(|w| !w.tx.is_closed());
        let mut line =
            serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap_or_default();
        line.push(b'\n');
        let line = Bytes::from(line);
        for w in &self.watchers {
            if in_scope(&w.collection, w.all_namespaces, collection)
                && matches_selector(obj, &w.selector)
            {
                let _ = w.tx.send(line.clone());
            }
        }
    }

    fn stored(&self, collection: &str, name: &str) -> Option<&Value> {
        self.collections.get(collection)?.get(name)
    }

    fn create(
        &mut self,
        collection: &str,
        namespace: Option<&str>,
        mut obj: Value,
    ) -> Result<Value, (u16, Value)> {
        let name = self
            .init_object(&mut obj, namespace)
            .map_err(|m| (400, status_body(400, "BadRequest", m)))?;
        if self.drop_events && collection.ends_with("/events") {
            return Ok(obj);
        }
        if self.stored(collection, &name).is_some() {
            return Err((
                409,
                status_body(409, "AlreadyExists", format!("{name} already exists")),
            ));
        }
        self.put(collection, &name, obj.clone());
        Ok(obj)
    }

    /// Removes an object and, like the garbage collector, everything it owns.
    fn remove(&mut self, collection: &str, name: &str) -> Option<Value> {
        let removed = self.take(collection, name)?;
        let mut dead: Vec<String> = removed
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(|u| vec![u.to_owned()])
            .unwrap_or_default();
        while let Some(uid) = dead.pop() {
            let victims = self.owner_index.remove(&uid).unwrap_or_default();
            for (coll, n) in victims {
                if let Some(obj) = self.take(&coll, &n)
                    && let Some(u) = obj.pointer("/metadata/uid").and_then(Value::as_str)
                {
                    dead.push(u.to_owned());
                }
            }
        }
        Some(removed)
    }

    fn delete(
        &mut self,
        t: &Target,
        name: &str,
        body: Option<&Value>,
    ) -> Result<Value, (u16, Value)> {
        let not_found = || {
            (
                404,
                status_body(404, "NotFound", format!("{name} not found")),
            )
        };
        let obj = self
            .collections
            .get(&t.collection)
            .and_then(|i| i.get(name))
            .cloned()
            .ok_or_else(not_found)?;
        if let Some(want) = body
            .and_then(|b| b.pointer("/preconditions/uid"))
            .and_then(Value::as_str)
        {
            let have = obj.pointer("/metadata/uid").and_then(Value::as_str);
            if have != Some(want) {
                return Err((
                    409,
                    status_body(
                        409,
                        "Conflict",
                        format!("precondition failed: uid {want} != {have:?}"),
                    ),
                ));
            }
        }
        let has_finalizers = obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        let graceful = self.graceful_pod_deletion && t.collection.ends_with("/pods");
        if has_finalizers || graceful {
            let rv = self.bump();
            let mut stored = obj;
            if stored.pointer("/metadata/deletionTimestamp").is_none() {
                stored["metadata"]["deletionTimestamp"] = json!(now_string());
            }
            stored["metadata"]["resourceVersion"] = json!(rv);
            self.put(&t.collection, name, stored.clone());
            return Ok(stored);
        }
        self.remove(&t.collection, name).ok_or_else(not_found)
    }

    fn patch(
        &mut self,
        t: &Target,
        name: &str,
        content_type: &str,
        body: Value,
    ) -> Result<Value, (u16, Value)> {
        let existing = self
            .collections
            .get(&t.collection)
            .and_then(|i| i.get(name))
            .cloned();
        let Some(old) = existing else {
            if content_type.starts_with("application/apply-patch") && t.subresource.is_none() {
                return self.create(&t.collection, t.namespace.as_deref(), body);
            }
            return Err((
                404,
                status_body(404, "NotFound", format!("{name} not found")),
            ));
        };
        let mut new = old.clone();
        if content_type.starts_with("application/json-patch") {
            let mut patch: json_patch::Patch = serde_json::from_value(body)
                .map_err(|e| (400, status_body(400, "BadRequest", e.to_string())))?;
            // Like the apiserver, a `test` for null passes when the path is absent.
            patch.0.retain(|op| match op {
                json_patch::PatchOperation::Test(t) => {
                    !(t.value.is_null() && new.pointer(t.path.as_str()).is_none())
                }
                _ => true,
            });
            json_patch::patch(&mut new, &patch)
                .map_err(|e| (422, status_body(422, "Invalid", e.to_string())))?;
        } else if content_type.starts_with("application/apply-patch")
            && t.subresource.as_deref() == Some("status")
        {
            new["status"] = body.get("status").cloned().unwrap_or(Value::Null);
        } else {
            json_patch::merge(&mut new, &body);
        }
        // The status subresource only changes status; the main resource never does.
        let mut result = old.clone();
        if t.subresource.as_deref() == Some("status") {
            result["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        } else {
            let status = old.get("status").cloned();
            result = new;
            match status {
                Some(s) => result["status"] = s,
                None => {
                    if let Some(o) = result.as_object_mut() {
                        o.remove("status");
                    }
                }
            }
            for key in [
                "uid",
                "name",
                "namespace",
                "creationTimestamp",
                "deletionTimestamp",
            ] {
                match old["metadata"].get(key) {
                    Some(v) => result["metadata"][key] = v.clone(),
                    None => {
                        if let Some(m) = result["metadata"].as_object_mut() {
                            m.remove(key);
                        }
                    }
                }
            }
            if old.get("spec") != result.get("spec") {
                let generation = old
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                result["metadata"]["generation"] = json!(generation + 1);
            }
        }
        result["metadata"]["resourceVersion"] = json!(self.bump());
        let deleting = result.pointer("/metadata/deletionTimestamp").is_some();
        let finalizers_left = result
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if deleting && !finalizers_left {
            self.remove(&t.collection, name);
            return Ok(result);
        }
        self.put(&t.collection, name, result.clone());
        Ok(result)
    }

    fn list(&self, t: &Target, query: &str) -> Vec<u8> {
        let selector = query_param(query, "labelSelector").unwrap_or_default();
        let equality: Vec<&str> = selector
            .split(',')
            .filter(|term| term.contains('=') && !term.contains("!=") && !term.contains("=="))
            .collect();
        let mut items: Vec<&Value> = Vec::new();
        for (coll, objects) in &self.collections {
            if !in_scope(&t.collection, t.all_namespaces, coll) {
                continue;
            }
            // Narrow with the smallest index set of the equality terms, then check them all.
            let candidates = equality
                .iter()
                .map(|term| {
                    self.label_index
                        .get(coll)
                        .and_then(|by_label| by_label.get(*term))
                })
                .min_by_key(|set| set.map_or(0, BTreeSet::len));
            let matched = |o: &&Value| matches_selector(o, &selector);
            match candidates {
                Some(None) => {}
                Some(Some(names)) => {
                    items.extend(names.iter().filter_map(|n| objects.get(n)).filter(matched))
                }
                None => items.extend(objects.values().filter(matched)),
            }
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct ListBody<'a> {
            api_version: &'static str,
            kind: &'static str,
            metadata: Value,
            items: Vec<&'a Value>,
        }
        // Serialized straight from the store: no clone of the objects.
        serde_json::to_vec(&ListBody {
            api_version: "v1",
            kind: "List",
            metadata: json!({"resourceVersion": self.resource_version.to_string()}),
            items,
        })
        .unwrap_or_default()
    }

    fn handle(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (u16, Vec<u8>) {
        let failure_pending = self
            .failures
            .iter()
            .any(|f| f.method == method && path.contains(&f.path_contains));
        if *method == Method::GET
            && !failure_pending
            && query_param(query, "watch").as_deref() != Some("true")
            && let Some(t) = parse_path(path)
            && t.name.is_none()
        {
            return (200, self.list(&t, query));
        }
        let (code, value) = self.handle_value(method, path, query, content_type, body);
        (code, serde_json::to_vec(&value).unwrap_or_default())
    }

    fn handle_value(
        &mut self,
        method: &Method,
        path: &str,
        query: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        if let Some(pos) = self
            .failures
            .iter()
            .position(|f| f.method == method && path.contains(&f.path_contains))
        {
            let code = self.failures[pos].code;
            self.failures[pos].remaining -= 1;
            if self.failures[pos].remaining == 0 {
                self.failures.remove(pos);
            }
            return (
                code,
                status_body(code, "InternalError", "injected failure".into()),
            );
        }
        let Some(t) = parse_path(path) else {
            return (
                404,
                status_body(404, "NotFound", format!("unknown path {path}")),
            );
        };
        if query_param(query, "watch").as_deref() == Some("true") {
            return (
                405,
                status_body(405, "MethodNotAllowed", "watch is not supported".into()),
            );
        }
        let result = match (method.clone(), t.name.clone()) {
            (Method::GET, None) => {
                Ok(serde_json::from_slice(&self.list(&t, query)).unwrap_or(Value::Null))
            }
            (Method::GET, Some(name)) => self
                .collections
                .get(&t.collection)
                .and_then(|i| i.get(&name))
                .cloned()
                .ok_or((
                    404,
                    status_body(404, "NotFound", format!("{name} not found")),
                )),
            (Method::POST, None) => match body {
                Some(obj) => self.create(&t.collection, t.namespace.as_deref(), obj),
                None => Err((400, status_body(400, "BadRequest", "missing body".into()))),
            },
            (Method::PATCH, Some(name)) => match body {
                Some(b) => self.patch(&t, &name, content_type, b),
                None => Err((400, status_body(400, "BadRequest", "missing body".into()))),
            },
            (Method::PUT, Some(name)) => match body {
                Some(b) => self.patch(&t, &name, "application/merge-patch+json", b),
                None => Err((400, status_body(400, "BadRequest", "missing body".into()))),
            },
            (Method::DELETE, Some(name)) => self.delete(&t, &name, body.as_ref()),
            _ => Err((
                405,
                status_body(405, "MethodNotAllowed", format!("{method} {path}")),
            )),
        };
        match result {
            Ok(v) => (if *method == Method::POST { 201 } else { 200 }, v),
            Err((code, v)) => (code, v),
        }
    }
}

impl tower::Service<Request<kube::client::Body>> for FakeApi {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let body: Option<Value> = if bytes.is_empty() {
                None
            } else {
                serde_json::from_slice(&bytes).ok()
            };
            let content_type = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().unwrap_or_default().to_owned();
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.served += 1;
            if parts.method == Method::GET
                && query_param(&query, "watch").as_deref() == Some("true")
                && let Some(t) = parse_path(&path)
            {
                // A never-ending stream of watch events, one JSON object per line.
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
                st.watchers.push(Watcher {
                    collection: t.collection,
                    all_namespaces: t.all_namespaces,
                    selector: query_param(&query, "labelSelector").unwrap_or_default(),
                    tx,
                });
                let frames = futures::stream::unfold(rx, |mut rx| async move {
                    let line = rx.recv().await?;
                    Some((Ok::<_, Infallible>(hyper::body::Frame::data(line)), rx))
                });
                let mut resp = Response::new(StreamBody::new(frames).boxed());
                resp.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                return Ok(resp);
            }
            if st.record {
                st.requests.push(RecordedRequest {
                    method: parts.method.clone(),
                    path: path.clone(),
                    query: query.clone(),
                    content_type: (!content_type.is_empty()).then(|| content_type.clone()),
                    body: body.clone(),
                });
            }
            let (code, bytes) = st.handle(&parts.method, &path, &query, &content_type, body);
            Ok(respond(code, bytes))
        })
    }
}

fn collection_of<K: Resource<DynamicType = ()>>(namespace: &str) -> String {
    K::url_path(&(), Some(namespace))
}

impl FakeApi {
    /// A fresh, empty API server that records requests.
    pub fn new() -> Self {
        let api = Self::default();
        api.lock().record = true;
        api
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A kube client talking to this server.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// Stop / start recording requests (benchmarks turn it off).
    pub fn set_recording(&self, on: bool) {
        self.lock().record = on;
    }

    /// Pods get a deletionTimestamp on delete and stay until [`Self::finish_pod_deletions`].
    pub fn set_graceful_pod_deletion(&self, on: bool) {
        self.lock().graceful_pod_deletion = on;
    }

    /// The next `times` requests with `method` whose path contains `path_contains` fail with `code`.
    pub fn fail_next(&self, method: Method, path_contains: &str, code: u16, times: usize) {
        self.lock().failures.push(InjectedFailure {
            method,
            path_contains: path_contains.to_owned(),
            code,
            remaining: times,
        });
    }

    /// Creates `obj` (as `kubectl create` would) and returns it as stored.
    pub fn create<K: Resource<DynamicType = ()> + Serialize + DeserializeOwned>(
        &self,
        obj: &K,
    ) -> K {
        let ns = obj
            .meta()
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let value = serde_json::to_value(obj).unwrap();
        let stored = self
            .lock()
            .create(&collection_of::<K>(&ns), Some(&ns), value)
            .unwrap();
        serde_json::from_value(stored).unwrap()
    }

    /// The stored object, if any.
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(
        &self,
        ns: &str,
        name: &str,
    ) -> Option<K> {
        let st = self.lock();
        let v = st
            .collections
            .get(&collection_of::<K>(ns))?
            .get(name)?
            .clone();
        Some(serde_json::from_value(v).unwrap())
    }

    /// Every stored object of a kind in `ns`, sorted by name.
    pub fn list<K: Resource<DynamicType = ()> + DeserializeOwned>(&self, ns: &str) -> Vec<K> {
        let st = self.lock();
        st.collections
            .get(&collection_of::<K>(ns))
            .map(|items| {
                items
                    .values()
                    .map(|v| serde_json::from_value(v.clone()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Applies `edit` to a stored object's JSON (spec edits bump `metadata.generation`).
    pub fn edit<K: Resource<DynamicType = ()>>(
        &self,
        ns: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) {
        let mut st = self.lock();
        let rv = st.bump();
        let collection = collection_of::<K>(ns);
        let mut obj = st
            .stored(&collection, name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not stored"));
        let old_spec = obj.get("spec").cloned();
        edit(&mut obj);
        if obj.get("spec").cloned() != old_spec {
            let g = obj
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(1);
            obj["metadata"]["generation"] = json!(g + 1);
        }
        obj["metadata"]["resourceVersion"] = json!(rv);
        st.put(&collection, name, obj);
    }

    /// Deletes an object as `kubectl delete` would (finalizers delay the removal).
    pub fn delete<K: Resource<DynamicType = ()>>(&self, ns: &str, name: &str) {
        let collection = collection_of::<K>(ns);
        let t = parse_path(&collection).unwrap();
        self.lock().delete(&t, name, None).unwrap();
    }

    /// Plays the kubelet: sets a pod's phase and Ready condition.
    pub fn set_pod_phase(&self, ns: &str, name: &str, phase: &str, ready: bool) {
        self.edit::<k8s_openapi::api::core::v1::Pod>(ns, name, |pod| {
            pod["status"] = json!({
                "phase": phase,
                "startTime": now_string(),
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            });
        });
    }

    /// Plays the kubelet for every pod of `ns`: sets phase and Ready condition.
    pub fn set_all_pods_phase(&self, ns: &str, phase: &str, ready: bool) {
        let collection = collection_of::<k8s_openapi::api::core::v1::Pod>(ns);
        let mut st = self.lock();
        let names: Vec<String> = st
            .collections
            .get(&collection)
            .map(|items| items.keys().cloned().collect())
            .unwrap_or_default();
        let status = json!({
            "phase": phase,
            "startTime": now_string(),
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        });
        for name in names {
            let rv = st.bump();
            if let Some(mut pod) = st.stored(&collection, &name).cloned() {
                pod["status"] = status.clone();
                pod["metadata"]["resourceVersion"] = json!(rv);
                st.put(&collection, &name, pod);
            }
        }
    }

    /// Plays the kubelet: the pod's container exited with `exit_code`.
    pub fn fail_pod(&self, ns: &str, name: &str, exit_code: i32, reason: &str) {
        self.edit::<k8s_openapi::api::core::v1::Pod>(ns, name, |pod| {
            pod["status"] = json!({
                "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [{
                    "name": "worker", "image": "img", "imageID": "", "ready": false, "restartCount": 0,
                    "state": {"terminated": {"exitCode": exit_code, "reason": reason}},
                }],
            });
        });
    }

    /// Plays the kubelet: pods with a deletionTimestamp go away.
    pub fn finish_pod_deletions(&self) {
        let mut st = self.lock();
        let doomed: Vec<(String, String)> = st
            .collections
            .iter()
            .filter(|(c, _)| c.ends_with("/pods"))
            .flat_map(|(c, items)| {
                items
                    .iter()
                    .filter(|(_, o)| o.pointer("/metadata/deletionTimestamp").is_some())
                    .map(|(n, _)| (c.clone(), n.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        for (c, n) in doomed {
            st.remove(&c, &n);
        }
    }

    /// Requests served so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Accept events without storing them (benchmarks: keeps memory about the operator).
    pub fn set_drop_events(&self, on: bool) {
        self.lock().drop_events = on;
    }

    /// Stored objects and their total size serialized as JSON.
    pub fn stored_bytes(&self) -> (usize, usize) {
        let st = self.lock();
        st.collections
            .values()
            .flat_map(|items| items.values())
            .fold((0, 0), |(n, bytes), v| {
                (n + 1, bytes + serde_json::to_vec(v).map_or(0, |b| b.len()))
            })
    }

    /// Open watch streams.
    pub fn watchers(&self) -> usize {
        let mut st = self.lock();
        st.watchers.retain(|w| !w.tx.is_closed());
        st.watchers.len()
    }

    /// Requests served so far (counted even when recording is off).
    pub fn served(&self) -> u64 {
        self.lock().served
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Number of stored objects in collections whose path ends with `/{plural}`.
    pub fn count(&self, plural: &str) -> usize {
        let suffix = format!("/{plural}");
        self.lock()
            .collections
            .iter()
            .filter(|(c, _)| c.ends_with(&suffix))
            .map(|(_, i)| i.len())
            .sum()
    }
}
