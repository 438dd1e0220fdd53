//! Watch events into the desired state: objects are stored by kind with the generation of the
//! list they came in, a relist prunes what it did not see, and each change recomputes only what
//! it affects — a service (joined with its slices, handed to `translate`, its old keys diffed
//! against the new ones) or a pod address.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::ops::Bound;

use msg::encode_value;

use super::{State, Stored};
use crate::slim::{Kind, ObjRef, SlimEndpoints, SlimEvent, SlimObject};
use crate::translate::{self, ServiceRecords};

impl State {
    /// Apply one watch event; returns whether any key became dirty.
    pub fn apply(&mut self, event: SlimEvent) -> bool {
        let before = self.pending();
        match event {
            SlimEvent::Init(kind) => {
                let k = &mut self.kinds[kind.index()];
                k.generation += 1;
            }
            SlimEvent::InitDone(kind) => {
                self.prune(kind);
                self.kinds[kind.index()].listed = true;
            }
            SlimEvent::Apply(obj) => self.apply_object(obj),
            SlimEvent::Delete(kind, id) => self.delete_object(kind, &id),
        }
        self.pending() != before
    }

    pub(super) fn apply_object(&mut self, obj: SlimObject) {
        let generation = self.kinds[obj.kind().index()].generation;
        match obj {
            SlimObject::Service(svc) => {
                let id = svc.id.clone();
                let old = self.services.insert(
                    id.clone(),
                    Stored {
                        obj: svc,
                        generation,
                    },
                );
                if old.is_none_or(|o| Some(&o.obj) != self.services.get(&id).map(|s| &s.obj)) {
                    self.recompute_service(&id);
                }
            }
            SlimObject::Endpoints(eps) => {
                let id = eps.id.clone();
                let service = eps.service_ref();
                let old = self.endpoints.insert(
                    id.clone(),
                    Stored {
                        obj: eps,
                        generation,
                    },
                );
                let unchanged = old
                    .as_ref()
                    .is_some_and(|o| Some(&o.obj) == self.endpoints.get(&id).map(|s| &s.obj));
                if unchanged {
                    return;
                }
                if let Some(old) = old {
                    let old_service = old.obj.service_ref();
                    if old_service != service {
                        self.unlink_slice(&old_service, &id.name);
                        self.recompute_service(&old_service);
                    }
                }
                let slices = self.by_service.entry(service.clone()).or_default();
                if let Err(pos) = slices.binary_search(&id.name) {
                    slices.insert(pos, id.name.clone());
                }
                self.recompute_service(&service);
            }
            SlimObject::Pod(pod) => {
                let id = pod.id.clone();
                let new_ips = pod.ips.clone();
                let old = self.pods.insert(
                    id.clone(),
                    Stored {
                        obj: pod,
                        generation,
                    },
                );
                let old_ips = old.map(|o| o.obj.ips).unwrap_or_default();
                if old_ips != new_ips {
                    self.pod_ips_changed(&id.namespace, &old_ips, &new_ips);
                }
            }
        }
    }

    pub(super) fn delete_object(&mut self, kind: Kind, id: &ObjRef) {
        match kind {
            Kind::Service => {
                if self.services.remove(id).is_some() {
                    self.recompute_service(id);
                }
            }
            Kind::Endpoints => {
                if let Some(old) = self.endpoints.remove(id) {
                    let service = old.obj.service_ref();
                    self.unlink_slice(&service, &id.name);
                    self.recompute_service(&service);
                }
            }
            Kind::Pod => {
                if let Some(old) = self.pods.remove(id) {
                    self.pod_ips_changed(&id.namespace, &old.obj.ips, &[]);
                }
            }
        }
    }

    /// After a (re)list: objects not seen in it are gone.
    pub(super) fn prune(&mut self, kind: Kind) {
        let generation = self.kinds[kind.index()].generation;
        let stale: Vec<ObjRef> = match kind {
            Kind::Service => stale_ids(&self.services, generation),
            Kind::Endpoints => stale_ids(&self.endpoints, generation),
            Kind::Pod => stale_ids(&self.pods, generation),
        };
        if !stale.is_empty() {
            tracing::info!(
                kind = kind.as_str(),
                count = stale.len(),
                "relist: removing objects that are gone"
            );
        }
        for id in stale {
            self.delete_object(kind, &id);
        }
    }

    pub(super) fn unlink_slice(&mut self, service: &ObjRef, slice: &str) {
        if let Some(set) = self.by_service.get_mut(service) {
            if let Ok(pos) = set.binary_search_by(|n| n.as_str().cmp(slice)) {
                set.remove(pos);
            }
            if set.is_empty() {
                self.by_service.remove(service);
            }
        }
    }

    pub(super) fn recompute_service(&mut self, id: &ObjRef) {
        let computed = match self.services.get(id) {
            Some(svc) => {
                let slices: Vec<&SlimEndpoints> = self
                    .by_service
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter_map(|name| {
                        self.endpoints
                            .get(&ObjRef::new(id.namespace.clone(), name.clone()))
                            .map(|s| &s.obj)
                    })
                    .collect();
                translate::service_records(&self.zone, self.ttl, &svc.obj, &slices)
            }
            None => ServiceRecords::default(),
        };

        // Forward keys: everything at or below the service key belongs to this service.
        let base = self.zone.service_key(&id.namespace, &id.name);
        let children = format!("{base}/");
        let mut old: Vec<String> = self
            .desired
            .range::<str, _>((Bound::Included(children.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(&children))
            .map(|(k, _)| k.to_string())
            .collect();
        if self.desired.contains_key(base.as_str()) {
            old.push(base);
        }
        let new_keys: HashSet<&str> = computed.records.iter().map(|(k, _)| k.as_str()).collect();
        let gone: Vec<String> = old
            .into_iter()
            .filter(|k| !new_keys.contains(k.as_str()))
            .collect();
        for (key, records) in computed.records {
            self.set(key, Some(encode_value(&records)));
        }
        for key in gone {
            self.set(key, None);
        }
        self.update_service_ptrs(id, &computed.ptrs);
    }

    pub(super) fn pod_ips_changed(&mut self, namespace: &str, old: &[IpAddr], new: &[IpAddr]) {
        let old: BTreeSet<IpAddr> = old.iter().copied().collect();
        let new: BTreeSet<IpAddr> = new.iter().copied().collect();
        for ip in old.difference(&new) {
            let slot = (namespace.to_string(), *ip);
            let left = match self.pod_ips.get_mut(&slot) {
                Some(n) => {
                    *n = n.saturating_sub(1);
                    *n
                }
                None => 0,
            };
            if left == 0 {
                self.pod_ips.remove(&slot);
                let key = self.zone.pod_key(namespace, *ip);
                self.set(key, None);
            }
        }
        for ip in new.difference(&old) {
            let n = self
                .pod_ips
                .entry((namespace.to_string(), *ip))
                .or_insert(0);
            *n += 1;
            if *n == 1 {
                let (key, records) = translate::pod_record(&self.zone, self.ttl, namespace, *ip);
                self.set(key, Some(encode_value(&records)));
            }
        }
    }
}

fn stale_ids<T>(map: &HashMap<ObjRef, Stored<T>>, generation: u64) -> Vec<ObjRef> {
    map.iter()
        .filter(|(_, s)| s.generation < generation)
        .map(|(id, _)| id.clone())
        .collect()
}
