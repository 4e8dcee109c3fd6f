//! Leader election through a `coordination.k8s.io/v1` Lease, so that of several replicas only one
//! runs the controllers (all of them serve the webhooks).
//!
//! The holder renews the Lease every `renew`; another replica takes it over once it has not been
//! renewed for `duration`. Every write carries the resourceVersion it read, so two replicas
//! racing for an expired Lease cannot both win. A replica that stops gracefully releases the
//! Lease, so the next takes over at once rather than after `duration`.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

/// Settings of one replica's candidacy.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The Lease's namespace (the operator's own).
    pub namespace: String,
    /// The Lease's name, shared by all replicas.
    pub lease: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease holds without renewal.
    pub duration: Duration,
    /// How often the holder renews, and others retry.
    pub renew: Duration,
}

/// Runs the election until `shutdown` completes, publishing on the returned channel whether this
/// replica leads. Releases the Lease on the way out when it held it.
pub fn elect(
    client: kube::Client,
    candidate: Candidate,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, &candidate.namespace);
    let task = tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let leading = match try_lead(&api, &candidate).await {
                Ok(leading) => leading,
                Err(error) => {
                    // Without a confirmed renewal we cannot know we still lead: step down.
                    tracing::warn!(%error, lease = %candidate.lease, "leader election: API call failed");
                    false
                }
            };
            if *tx.borrow() != leading {
                tracing::info!(identity = %candidate.identity, leading, "leadership changed");
                tx.send_replace(leading);
            }
            tokio::select! {
                () = tokio::time::sleep(candidate.renew) => {}
                () = &mut shutdown => break,
            }
        }
        if *tx.borrow() {
            tx.send_replace(false);
            if let Err(error) = release(&api, &candidate).await {
                tracing::warn!(%error, "releasing the leader Lease failed; the next leader waits for it to expire");
            }
        }
    });
    (rx, task)
}

/// One round: acquire, renew or observe. True when this replica holds the Lease afterwards.
async fn try_lead(api: &Api<Lease>, me: &Candidate) -> Result<bool, kube::Error> {
    let now = Timestamp::now();
    let Some(mut lease) = api.get_opt(&me.lease).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(me.lease.clone()),
                ..Default::default()
            },
            spec: Some(held_by(me, now, 0, Some(now))),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(error) => Err(error),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
    let mine = holder == Some(me.identity.as_str());
    let expired = spec.renew_time.as_ref().is_none_or(|renewed| {
        let held_for =
            SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
        renewed
            .0
            .checked_add(held_for)
            .is_ok_and(|until| until < now)
    });
    if !mine && holder.is_some() && !expired {
        return Ok(false);
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let acquired = if mine {
        spec.acquire_time.map(|t| t.0)
    } else {
        Some(now)
    };
    lease.spec = Some(held_by(me, now, transitions, acquired));
    match api.replace(&me.lease, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        // Someone else wrote first (renewed or took over): not ours this round.
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(error) => Err(error),
    }
}

fn held_by(
    me: &Candidate,
    now: Timestamp,
    transitions: i32,
    acquired: Option<Timestamp>,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(me.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(me.duration.as_secs()).unwrap_or(i32::MAX)),
        acquire_time: acquired.map(MicroTime),
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(transitions),
        ..Default::default()
    }
}

async fn release(api: &Api<Lease>, me: &Candidate) -> Result<(), kube::Error> {
    let Some(mut lease) = api.get_opt(&me.lease).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(me.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    api.replace(&me.lease, &PostParams::default(), &lease)
        .await
        .map(|_| ())
}
