//! Self-test of the database harness (tests/src/databases.rs): each server
//! starts, stores and returns rows (NULL included), keeps them across a clean
//! restart, and refuses a wrong password over TCP.

use std::time::Instant;

use sinkhost_e2e::databases::{MariaDb, Postgres, DB_NAME, DB_PASSWORD, DB_USER};

fn rows(rows: &[&[&str]]) -> Vec<Vec<String>> {
    rows.iter()
        .map(|row| row.iter().map(|value| value.to_string()).collect())
        .collect()
}

#[test]
fn mariadb_stores_rows_across_a_restart_and_checks_passwords() {
    let started = Instant::now();
    let mut db = MariaDb::start().expect("MariaDB starts");
    eprintln!(
        "MariaDB ready on port {} after {:?}",
        db.port(),
        started.elapsed()
    );
    assert_eq!(
        db.url(),
        format!(
            "mysql://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{}/{DB_NAME}",
            db.port()
        )
    );
    assert_eq!(
        db.url_without_password(),
        format!("mysql://{DB_USER}@127.0.0.1:{}/{DB_NAME}", db.port())
    );

    db.execute(
        "CREATE TABLE events (id INT PRIMARY KEY, subject VARCHAR(100) NOT NULL, body TEXT NULL);
         INSERT INTO events VALUES (1, 'orders.new', '{\"n\":1}'), (2, 'orders.paid', NULL), (3, 'orders.näive', '');",
    )
    .unwrap_or_else(|err| panic!("{err:#}\n{}", db.log()));
    let expected = rows(&[
        &["1", "orders.new", "{\"n\":1}"],
        &["2", "orders.paid", "NULL"],
        &["3", "orders.näive", ""],
    ]);
    let select = "SELECT id, subject, body FROM events ORDER BY id";
    assert_eq!(db.query(select).unwrap(), expected);
    assert_eq!(
        db.query("SELECT body IS NULL FROM events WHERE id = 2")
            .unwrap(),
        rows(&[&["1"]])
    );
    assert!(db
        .query("SELECT * FROM events WHERE id = 99")
        .unwrap()
        .is_empty());

    // Errors carry the client's message.
    let err = db.execute("SELECT nosuch FROM events").unwrap_err();
    assert!(format!("{err:#}").contains("Unknown column"), "{err:#}");
    // The sink's user is confined to its database.
    let err = db.execute("CREATE DATABASE other").unwrap_err();
    assert!(format!("{err:#}").contains("denied"), "{err:#}");
    assert_eq!(
        db.execute_as_admin("SELECT COUNT(*) FROM events").unwrap(),
        rows(&[&["3"]])
    );

    // Passwords are enforced over TCP.
    let err = db
        .query_as(DB_USER, "wrong-password", "SELECT 1")
        .unwrap_err();
    assert!(format!("{err:#}").contains("Access denied"), "{err:#}");
    assert!(db.query_as(DB_USER, "", "SELECT 1").is_err());
    assert!(
        db.query_as("root", "", "SELECT 1").is_err(),
        "root must not log in over TCP"
    );
    assert_eq!(
        db.query_as(DB_USER, DB_PASSWORD, "SELECT 1").unwrap(),
        rows(&[&["1"]])
    );

    let port = db.port();
    let stopping = Instant::now();
    db.stop().expect("MariaDB stops");
    eprintln!("MariaDB stopped after {:?}", stopping.elapsed());
    assert!(
        db.query("SELECT 1").is_err(),
        "a stopped server answers nothing"
    );
    let restarting = Instant::now();
    db.start_again().unwrap_or_else(|err| panic!("{err:#}"));
    eprintln!("MariaDB ready again after {:?}", restarting.elapsed());
    assert_eq!(db.port(), port);
    assert_eq!(db.query(select).unwrap(), expected);
}

#[test]
fn postgres_stores_rows_across_a_restart_and_checks_passwords() {
    let started = Instant::now();
    let mut db = Postgres::start().expect("PostgreSQL starts");
    eprintln!(
        "PostgreSQL ready on port {} after {:?}",
        db.port(),
        started.elapsed()
    );
    assert_eq!(
        db.url(),
        format!(
            "postgres://{DB_USER}:{DB_PASSWORD}@127.0.0.1:{}/{DB_NAME}",
            db.port()
        )
    );
    assert_eq!(
        db.url_without_password(),
        format!("postgres://{DB_USER}@127.0.0.1:{}/{DB_NAME}", db.port())
    );

    db.execute(
        "CREATE TABLE events (id INT PRIMARY KEY, subject TEXT NOT NULL, body JSONB NULL, ok BOOLEAN);
         INSERT INTO events VALUES (1, 'orders.new', '{\"n\":1}', true), (2, 'orders.paid', NULL, false), (3, 'orders.näive', '[]', NULL);",
    )
    .unwrap_or_else(|err| panic!("{err:#}\n{}", db.log()));
    let expected = rows(&[
        &["1", "orders.new", "{\"n\": 1}", "t"],
        &["2", "orders.paid", "NULL", "f"],
        &["3", "orders.näive", "[]", "NULL"],
    ]);
    let select = "SELECT id, subject, body, ok FROM events ORDER BY id";
    assert_eq!(db.query(select).unwrap(), expected);
    assert_eq!(
        db.query("SELECT body IS NULL FROM events WHERE id = 2")
            .unwrap(),
        rows(&[&["t"]])
    );
    assert!(db
        .query("SELECT * FROM events WHERE id = 99")
        .unwrap()
        .is_empty());

    let err = db.execute("SELECT nosuch FROM events").unwrap_err();
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
    // The sink's user is no superuser.
    let err = db.execute("CREATE ROLE intruder SUPERUSER").unwrap_err();
    assert!(format!("{err:#}").contains("must be superuser"), "{err:#}");
    assert_eq!(
        db.execute_as_admin("SELECT count(*) FROM events").unwrap(),
        rows(&[&["3"]])
    );
    assert_eq!(
        db.execute_as_admin("SELECT rolsuper FROM pg_roles WHERE rolname = 'sinkhost'")
            .unwrap(),
        rows(&[&["f"]])
    );

    // Passwords are enforced over TCP.
    let err = db
        .query_as(DB_USER, "wrong-password", "SELECT 1")
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("password authentication failed"),
        "{err:#}"
    );
    assert!(db.query_as(DB_USER, "", "SELECT 1").is_err());
    assert!(
        db.query_as("postgres", "", "SELECT 1").is_err(),
        "postgres must not log in over TCP"
    );
    assert_eq!(
        db.query_as(DB_USER, DB_PASSWORD, "SELECT 1").unwrap(),
        rows(&[&["1"]])
    );

    let port = db.port();
    let stopping = Instant::now();
    db.stop().expect("PostgreSQL stops");
    eprintln!("PostgreSQL stopped after {:?}", stopping.elapsed());
    assert!(
        db.query("SELECT 1").is_err(),
        "a stopped server answers nothing"
    );
    let restarting = Instant::now();
    db.start_again().unwrap_or_else(|err| panic!("{err:#}"));
    eprintln!("PostgreSQL ready again after {:?}", restarting.elapsed());
    assert_eq!(db.port(), port);
    assert_eq!(db.query(select).unwrap(), expected);
}
