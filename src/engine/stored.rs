//! The session store's lifecycle, seen from the engine: checking a stored session out
//! under a lease, restoring every free one at start, saving on demand and listing
//! what is stored. The background saves and lease renewals are the persister's
//! (`persist.rs`).

use std::sync::Arc;

use super::{Engine, Origin};

use super::persist::Persister;
use crate::client::ClientBuilder;
use crate::error::{Error, Result};
use crate::session::snapshot::decode;
use crate::session::Session;

use crate::tenant::DEFAULT_TENANT;

impl Engine {
    pub(super) fn persister(&self) -> Result<&Arc<Persister>> {
        self.persister.as_ref().ok_or_else(|| {
            Error::invalid_input("this engine has no store: set one with EngineBuilder::store")
        })
    }

    /// Takes the session `id` out of the store (another worker created it, or this one
    /// before a restart) and makes it live here, under this engine's lease;
    /// `transport` sets what snapshots do not carry (proxy, CA file, resolve overrides).
    ///
    /// # Errors
    ///
    /// [`Error::is_lease_held`] while another worker owns it,
    /// [`Error::is_session_not_found`] when the store has no such session,
    /// [`Error::is_snapshot`] for a corrupt or foreign record (named by its key),
    /// [`Error::is_store_unavailable`], [`Error::is_session_limit`].
    pub async fn checkout_session(
        &self,
        id: &str,
        transport: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Result<String> {
        self.checkout_session_of(DEFAULT_TENANT, id, transport)
            .await
    }

    /// [`Engine::checkout_session`] for a session of `tenant`: only that tenant's keys
    /// are looked at, so another tenant's session is "not found" here.
    ///
    /// # Errors
    ///
    /// As [`Engine::checkout_session`]; [`Error::is_invalid_input`] for a malformed
    /// tenant name.
    pub async fn checkout_session_of(
        &self,
        tenant: &str,
        id: &str,
        transport: impl FnOnce(ClientBuilder) -> ClientBuilder,
    ) -> Result<String> {
        crate::tenant::check_tenant(tenant)?;
        let p = self.persister()?;
        let store = p.store();
        let key = crate::tenant::store_key(tenant, id);
        let lease = store.acquire(&key, p.lease_ttl()).await?;
        let restored = async {
            let stored = store.load(&key).await?.ok_or_else(|| {
                Error::session_not_found(&format!(
                    "{id} (tenant {tenant}; not in {})",
                    store.describe()
                ))
            })?;
            let place = format!("{} session {key}", store.describe());
            let snapshot =
                decode(&stored.bytes, p.key()).map_err(|why| Error::snapshot(&place, why))?;
            if snapshot.id.to_string() != id || snapshot.tenant != tenant {
                return Err(Error::snapshot(
                    &place,
                    format!(
                        "the record holds session {} of tenant {}, not {id} of {tenant}",
                        snapshot.id, snapshot.tenant
                    ),
                ));
            }
            let session = Session::from_snapshot(snapshot, transport)
                .map_err(|e| Error::snapshot(&place, format!("cannot restore: {e}")))?;
            Ok((session, stored.version))
        }
        .await;
        match restored {
            Ok((session, version)) => {
                self.register(session, Origin::CheckedOut(lease, version))
                    .await
            }
            Err(e) => {
                let _ = store.release(&lease).await;
                Err(e)
            }
        }
    }

    /// Checks out every session in the store that no worker holds (of every tenant), up
    /// to the session limit; returns their ids. A corrupt or foreign record is reported
    /// (with its key) and skipped; so is a session another worker holds.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`] when the store cannot be listed (the engine
    /// works without it meanwhile).
    pub async fn restore_sessions(
        &self,
        transport: impl Fn(ClientBuilder) -> ClientBuilder,
    ) -> Result<Vec<String>> {
        let p = self.persister()?;
        let mut restored = Vec::new();
        for key in p.store().list().await? {
            let (tenant, id) = crate::tenant::split_store_key(&key);
            match self.checkout_session_of(tenant, id, &transport).await {
                Ok(id) => restored.push(id),
                Err(e) if e.is_lease_held() => {
                    tracing::debug!(session = %id, "held by another worker; not restored");
                }
                Err(e) if e.is_session_limit() => break,
                Err(e) if e.is_store_unavailable() => return Err(e),
                Err(e) => tracing::warn!(session = %id, error = %e, "skipping a stored session"),
            }
        }
        Ok(restored)
    }

    /// Saves the live session `id` to the store now; returns the version written.
    ///
    /// # Errors
    ///
    /// [`Error::is_store_unavailable`] (the state is kept and written when the store is
    /// back; this call did not save it), [`Error::is_store_conflict`] (another worker
    /// saved a newer version: this session is closed), [`Error::is_session_not_found`].
    pub async fn save_session(&self, id: &str) -> Result<u64> {
        let p = self.persister()?;
        let key = self.session(id).await?.session().store_key();
        p.save_now(&key).await
    }

    /// Ids of the default tenant's sessions in the store: live here, leased by another
    /// worker, or free to check out.
    ///
    /// # Errors
    ///
    /// [`Error::is_invalid_input`] without a store, [`Error::is_store_unavailable`].
    pub async fn stored_sessions(&self) -> Result<Vec<String>> {
        self.stored_sessions_of(DEFAULT_TENANT).await
    }

    /// Ids of `tenant`'s sessions in the store (no other tenant's).
    ///
    /// # Errors
    ///
    /// As [`Engine::stored_sessions`]; [`Error::is_invalid_input`] for a malformed
    /// tenant name.
    pub async fn stored_sessions_of(&self, tenant: &str) -> Result<Vec<String>> {
        crate::tenant::check_tenant(tenant)?;
        let keys = self.persister()?.store().list().await?;
        Ok(crate::tenant::ids_of(tenant, keys))
    }
}
