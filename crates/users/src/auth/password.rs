//! Password hashing: argon2id (the `argon2` crate's defaults: 19 MiB, 2 passes), never
//! on an async worker: on a few threads of its own, one per core. Each hash takes 19 MiB
//! while it runs, so a burst of logins or registrations waits its turn there instead of
//! taking 19 MiB per request (on tokio's blocking pool, sixteen at once took the server's
//! peak memory from 65 MiB to about 1 GiB).

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, anyhow};
use std::cell::RefCell;

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};

use crate::domain::Password;

thread_local! {
    /// A hashing thread's argon2 memory (19 MiB with the default parameters): grown once,
    /// reused by every hash, never freed. Allocated per hash instead, the allocator kept
    /// each freed block and split it for small allocations, so a server that had hashed
    /// fifty passwords held some 450 MiB.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// argon2id of `password` with `salt` (raw bytes) and `params`, into `out`, in this
/// thread's [`MEMORY`].
fn argon2_into(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
) -> anyhow::Result<()> {
    MEMORY.with_borrow_mut(|memory| {
        let blocks = params.block_count();
        if memory.len() < blocks {
            memory.resize(blocks, Block::new());
        }
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
            .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
            .map_err(|e| anyhow!("hashing a password: {e}"))
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `work` on the hashing threads (started on first use, one per core) and answers
/// its result; callers queue when all are busy.
async fn on_hashing_thread<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    static JOBS: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for i in 0..threads {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            // A panic fails that one hash (its caller sees the
                            // answer dropped), not the thread.
                            Ok(job) => {
                                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(error) = spawned {
                tracing::error!(%error, "starting a password hashing thread");
            }
        }
        Mutex::new(sender)
    });
    let (answer, answered) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = answer.send(work());
    });
    jobs.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send(job)
        .map_err(|_| anyhow!("the password hashing threads are gone"))?;
    answered.await.context("password hashing task")
}

/// The PHC string (`$argon2id$v=19$...`) of a new password, with a random salt.
pub(crate) async fn hash(password: Password) -> anyhow::Result<String> {
    on_hashing_thread(move || hash_now(password.as_str())).await?
}

/// What `argon2`'s `PasswordHasher::hash_password` writes, computed in [`MEMORY`].
fn hash_now(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| anyhow!("no randomness for a salt"))?;
    let params = Params::default();
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2_into(&params, password.as_bytes(), &salt, &mut out)?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow!("encoding a salt: {e}"))?;
    let hash = PasswordHash {
        algorithm: argon2::ARGON2ID_IDENT,
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow!("parameters: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| anyhow!("an output: {e}"))?),
    };
    Ok(hash.to_string())
}

/// Whether `password` hashes to the PHC string `stored` (any argon2id parameters), the
/// outputs compared in constant time.
fn matches_now(stored: &str, password: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(stored).map_err(|e| anyhow!("a stored hash: {e}"))?;
    anyhow::ensure!(
        parsed.algorithm == argon2::ARGON2ID_IDENT,
        "a stored hash of another algorithm"
    );
    let params = Params::try_from(&parsed).map_err(|e| anyhow!("stored parameters: {e}"))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("a stored hash without its salt or output");
    };
    let mut salt_bytes = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow!("a stored salt: {e}"))?;
    let mut out = vec![0u8; expected.len()];
    argon2_into(&params, password.as_bytes(), salt, &mut out)?;
    // `Output`'s equality is constant-time.
    Ok(Output::new(&out).map_err(|e| anyhow!("an output: {e}"))? == expected)
}

/// Whether `password` matches `stored`. Without a stored hash (an unknown email, a user
/// without a password) it still costs one hash, against a dummy, and answers `false`: so
/// a wrong email and a wrong password take about the same time.
pub(crate) async fn verify(stored: Option<String>, password: String) -> anyhow::Result<bool> {
    on_hashing_thread(move || {
        let known = stored.is_some();
        let stored = match &stored {
            Some(hash) => hash.as_str(),
            None => dummy_hash(),
        };
        let matches = matches_now(stored, &password)?;
        Ok(known && matches)
    })
    .await?
}

/// A hash of a random password, computed once per process, with the same parameters as
/// real ones.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let mut random = [0u8; 24];
        let _ = aws_lc_rs::rand::fill(&mut random);
        let password: String = random.iter().map(|b| format!("{b:02x}")).collect();
        hash_now(&password).unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_never_contain_the_password() {
        let password = "correct horse battery".to_owned();
        let hash = super::hash(Password::parse(password.clone()).unwrap())
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
        assert!(!hash.contains(&password));
        assert!(verify(Some(hash.clone()), password.clone()).await.unwrap());
        assert!(
            !verify(Some(hash), "wrong horse battery".into())
                .await
                .unwrap()
        );
        assert!(
            !verify(None, password).await.unwrap(),
            "no hash never matches"
        );
    }

    /// Hashes computed in the reused memory are the `argon2` crate's own, both ways (so
    /// stored hashes of either kind keep verifying), and a wrong password fails.
    #[tokio::test]
    async fn the_reused_memory_computes_the_crates_own_hashes() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let ours = hash(Password::parse("correct horse battery".into()).unwrap())
            .await
            .unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", &parsed)
                .is_ok()
        );
        assert!(
            Argon2::default()
                .verify_password(b"wrong horse battery", &parsed)
                .is_err()
        );
        let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
        let theirs = Argon2::default()
            .hash_password(b"another good password", &salt)
            .unwrap()
            .to_string();
        for (password, expected) in [
            ("another good password", true),
            ("another bad password", false),
        ] {
            assert_eq!(
                verify(Some(theirs.clone()), password.into()).await.unwrap(),
                expected
            );
        }
        let light = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8, 1, 1, None).unwrap(),
        )
        .hash_password(b"another good password", &salt)
        .unwrap()
        .to_string();
        assert!(
            verify(Some(light), "another good password".into())
                .await
                .unwrap(),
            "other parameters"
        );
    }
}
