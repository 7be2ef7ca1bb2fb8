//! What a statement costs, from `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`: for tests that
//! prove a query reads a few pages, not a whole table.

/// One `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) ...` answer: load it with `sql_query`.
#[derive(diesel::QueryableByName)]
pub struct Plan {
    #[diesel(sql_type = diesel::sql_types::Json, column_name = "QUERY PLAN")]
    pub plan: serde_json::Value,
}

impl Plan {
    /// `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)` in front of `statement`.
    pub fn explain(statement: &str) -> String {
        format!("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {statement}")
    }

    fn root(&self) -> &serde_json::Value {
        &self.plan[0]["Plan"]
    }

    /// Shared buffers the whole plan touched (hit or read).
    pub fn buffers(&self) -> i64 {
        let root = self.root();
        root["Shared Hit Blocks"].as_i64().unwrap_or(0)
            + root["Shared Read Blocks"].as_i64().unwrap_or(0)
    }

    /// Every node's type (`Seq Scan`, `Index Scan`...), root first.
    pub fn node_types(&self) -> Vec<String> {
        self.collect("Node Type")
    }

    /// The tables and indexes' tables it reads, sorted, each once.
    pub fn relations(&self) -> Vec<String> {
        let mut relations = self.collect("Relation Name");
        relations.sort();
        relations.dedup();
        relations
    }

    fn collect(&self, key: &str) -> Vec<String> {
        fn walk(node: &serde_json::Value, key: &str, into: &mut Vec<String>) {
            if let Some(value) = node[key].as_str() {
                into.push(value.to_owned());
            }
            for child in node["Plans"].as_array().into_iter().flatten() {
                walk(child, key, into);
            }
        }
        let mut found = Vec::new();
        walk(self.root(), key, &mut found);
        found
    }
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.plan)
    }
}
