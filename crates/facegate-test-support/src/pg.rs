//! Throwaway PostgreSQL databases: one per test, dropped with its
//! connections when the last handle goes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// The admin URL of the test server: `FACEGATE_TEST_POSTGRES_URL`, else the
/// local default (a role that may create databases).
pub fn admin_url() -> String {
    std::env::var("FACEGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Runs blocking PostgreSQL client work on its own thread: the synchronous
/// client refuses to run inside an async runtime.
pub fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f)
        .join()
        .expect("PostgreSQL helper thread")
}

/// A client of `url`, or a panic that says how to provide PostgreSQL.
pub fn connect(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required for this run and is not reachable at {url} ({e}); \
             start one (see .ci/run) or set FACEGATE_TEST_POSTGRES_URL"
        )
    })
}

/// `url` with its database name replaced by `db` (query kept).
pub fn with_db(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

/// A database created for one test.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// Its URL.
    pub url: String,
}

impl PgDatabase {
    /// A fresh database on the server at [`admin_url`].
    pub fn create() -> Arc<PgDatabase> {
        Self::create_on(&admin_url())
    }

    /// A fresh database on the server whose admin URL is `admin_url`.
    pub fn create_on(admin_url: &str) -> Arc<PgDatabase> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let admin_url = admin_url.to_string();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("facegate_test_{}_{seq}_{:x}", std::process::id(), nanos);
        let (a, n) = (admin_url.clone(), name.clone());
        blocking(move || {
            connect(&a)
                .batch_execute(&format!("CREATE DATABASE {n}"))
                .unwrap()
        });
        Arc::new(PgDatabase {
            url: with_db(&admin_url, &name),
            admin_url,
            name,
        })
    }

    /// A client of this database.
    pub fn client(&self) -> postgres::Client {
        connect(&self.url)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (a, n) = (self.admin_url.clone(), self.name.clone());
        blocking(move || {
            if let Ok(mut c) = postgres::Client::connect(&a, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)"));
            }
        });
    }
}
