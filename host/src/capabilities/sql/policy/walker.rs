//! The walk over a whole parsed statement. Every node kind it knows is
//! matched and checked; every other one is refused, so a construct this
//! file has not reviewed (a new `sqlparser` variant included) never
//! reaches a database. Structs are destructured without `..`: a field
//! added by a new `sqlparser` fails to compile until it is reviewed here.

use std::collections::BTreeMap;

use sqlparser::ast::{
    AlterTableOperation, Assignment, AssignmentTarget, ColumnDef, ColumnOption, ConflictTarget,
    Cte, Delete, Distinct, DoUpdate, Expr, Fetch, FromTable, Function, FunctionArg,
    FunctionArgExpr, FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, IndexColumn,
    Insert, Join, JoinConstraint, JoinOperator, LimitClause, Merge, MergeAction, MergeClause,
    MergeClauseKind, MergeInsertKind, MergeUpdateKind, ObjectName, ObjectNamePart, ObjectType,
    Offset, OnConflict, OnConflictAction, OnInsert, OrderBy, OrderByExpr, OrderByKind, Query,
    Select, SelectFlavor, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, SqlOption,
    Statement, TableAlias, TableConstraint, TableFactor, TableObject, TableWithJoins, Update,
    UpdateTableFromKind, Value, Values, WildcardAdditionalOptions, With,
};

use super::functions::{
    is_allowed_binary_operator, is_allowed_cast_type, is_allowed_function,
    is_allowed_unary_operator, is_placeholder, is_reserved_column,
};
use super::{fold, normalise_parsed_name, Refusal};
use crate::config::{SqlDriver, StatementKind};

/// Deepest nesting of queries and expressions walked. Far beyond any
/// sink's statement; refusing deeper ones keeps the walk off the end of
/// the stack whatever the parser let through.
pub const MAX_DEPTH: usize = 64;

/// Most rows in one `VALUES` list: a sink's multi-row insert is a few
/// hundred; PostgreSQL binds at most 65,535 parameters per statement.
pub const MAX_VALUES_ROWS: usize = 10_000;

type Walk = Result<(), Refusal>;

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(message.into()))
}

/// What the walk found the statement needs, beyond the tables it checked.
#[derive(Debug, Default)]
pub struct Needs {
    /// Each kind the statement needs, with the construct that needs it.
    pub kinds: BTreeMap<StatementKind, &'static str>,
    /// Whether it is DDL (on granted tables only: checked during the walk).
    pub ddl: bool,
}

/// The grant as the walker sees it.
pub struct Grant<'g> {
    pub driver: SqlDriver,
    pub tables: &'g std::collections::BTreeSet<Vec<String>>,
}

/// Names visible to column qualifiers in one query level: tables by their
/// name (all parts and the last part) and aliases.
#[derive(Default)]
struct Scope {
    qualifiers: Vec<Vec<String>>,
}

/// Walks one statement.
pub struct Walker<'g> {
    grant: Grant<'g>,
    needs: Needs,
    scopes: Vec<Scope>,
    /// CTE names defined by enclosing `WITH` clauses (folded, one part).
    ctes: Vec<String>,
    depth: usize,
}

impl<'g> Walker<'g> {
    pub fn new(grant: Grant<'g>) -> Self {
        Self {
            grant,
            needs: Needs::default(),
            scopes: Vec::new(),
            ctes: Vec::new(),
            depth: 0,
        }
    }

    /// Walks `statement`; returns what it needs.
    pub fn walk(mut self, statement: &Statement) -> Result<Needs, Refusal> {
        self.statement(statement)?;
        Ok(self.needs)
    }

    fn driver(&self) -> SqlDriver {
        self.grant.driver
    }

    fn need(&mut self, kind: StatementKind, what: &'static str) {
        self.needs.kinds.entry(kind).or_insert(what);
    }

    /// Runs `inner` one level deeper; refuses beyond [`MAX_DEPTH`].
    fn nested<T>(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return refuse(format!(
                "the statement nests deeper than {MAX_DEPTH} levels; write it flatter"
            ));
        }
        let outcome = inner(self);
        self.depth -= 1;
        outcome
    }

    /// Runs `inner` with a new innermost scope.
    fn scoped<T>(
        &mut self,
        inner: impl FnOnce(&mut Self) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        self.scopes.push(Scope::default());
        let outcome = inner(self);
        self.scopes.pop();
        outcome
    }

    fn add_qualifier(&mut self, parts: Vec<String>) {
        if let Some(scope) = self.scopes.last_mut() {
            if parts.len() > 1 {
                if let Some(last) = parts.last() {
                    scope.qualifiers.push(vec![last.clone()]);
                }
            }
            scope.qualifiers.push(parts);
        }
    }

    fn fold_ident(&self, ident: &Ident) -> String {
        if ident.quote_style.is_some() {
            ident.value.clone()
        } else {
            fold(self.driver(), &ident.value)
        }
    }

    // ----- statements -------------------------------------------------

    fn statement(&mut self, statement: &Statement) -> Walk {
        self.nested(|w| match statement {
            Statement::Query(query) => {
                w.need(StatementKind::Select, "SELECT");
                w.query(query)
            }
            Statement::Insert(insert) => w.insert(insert),
            Statement::Update(update) => w.update(update),
            Statement::Delete(delete) => w.delete(delete),
            Statement::Merge(merge) => w.merge(merge),
            Statement::CreateTable(_)
            | Statement::CreateIndex(_)
            | Statement::AlterTable(_)
            | Statement::Drop { .. }
            | Statement::Truncate(_) => {
                w.needs.ddl = true;
                w.ddl(statement)
            }
            other => refuse(format!(
                "{} statements are never granted to plugins",
                statement_name(other)
            )),
        })
    }

    fn granted_table(&mut self, name: &ObjectName) -> Walk {
        let parts = normalise_parsed_name(self.driver(), name);
        if self.grant.tables.contains(&parts) {
            self.add_qualifier(parts);
            Ok(())
        } else {
            refuse(format!("table `{name}` is not granted"))
        }
    }

    fn insert(&mut self, insert: &Insert) -> Walk {
        let Insert {
            insert_token: _,
            optimizer_hints,
            or,
            ignore: _,
            into: _,
            table,
            table_alias,
            columns,
            overwrite,
            source,
            assignments,
            partitioned,
            after_columns,
            has_table_keyword,
            on,
            returning,
            output,
            replace_into,
            priority,
            insert_alias,
            settings,
            format_clause,
            multi_table_insert_type,
            multi_table_into_clauses,
            multi_table_when_clauses,
            multi_table_else_clause,
        } = insert;
        if !optimizer_hints.is_empty() {
            return refuse("optimizer hints are refused in statements");
        }
        if or.is_some()
            || *overwrite
            || partitioned.is_some()
            || !after_columns.is_empty()
            || *has_table_keyword
            || output.is_some()
            || priority.is_some()
            || insert_alias.is_some()
            || settings.is_some()
            || format_clause.is_some()
            || multi_table_insert_type.is_some()
            || !multi_table_into_clauses.is_empty()
            || !multi_table_when_clauses.is_empty()
            || multi_table_else_clause.is_some()
        {
            return refuse("this form of INSERT is not reviewed and not allowed");
        }
        if *replace_into {
            self.need(StatementKind::Replace, "REPLACE INTO");
        } else {
            self.need(StatementKind::Insert, "INSERT");
        }
        let TableObject::TableName(name) = table else {
            return refuse("INSERT into a table function is not allowed");
        };
        self.scoped(|w| {
            // The source query sees no target columns: walk it first, in a
            // scope of its own.
            if let Some(source) = source {
                w.scoped(|w| w.query(source))?;
            }
            w.granted_table(name)?;
            if let Some(alias) = table_alias {
                let alias = w.fold_ident(&alias.alias);
                w.add_qualifier(vec![alias]);
            }
            for column in columns {
                w.column_name(column)?;
            }
            w.assignments(assignments)?;
            match on {
                None => {}
                Some(OnInsert::DuplicateKeyUpdate(updates)) => {
                    if !updates.iter().all(|a| w.is_identity(a)) {
                        w.need(StatementKind::Upsert, "INSERT ... ON DUPLICATE KEY UPDATE");
                    }
                    w.assignments(updates)?;
                }
                Some(OnInsert::OnConflict(conflict)) => w.on_conflict(conflict)?,
                Some(_) => {
                    return refuse("this ON clause of INSERT is not reviewed and not allowed")
                }
            }
            w.returning(returning.as_deref())
        })
    }

    /// `c = c`: an assignment that changes no row (MySQL's way to skip a
    /// duplicate without `INSERT IGNORE`).
    fn is_identity(&self, assignment: &Assignment) -> bool {
        let AssignmentTarget::ColumnName(target) = &assignment.target else {
            return false;
        };
        let target = normalise_parsed_name(self.driver(), target);
        let value = match &assignment.value {
            Expr::Identifier(ident) => vec![self.fold_ident(ident)],
            Expr::CompoundIdentifier(parts) => parts.iter().map(|p| self.fold_ident(p)).collect(),
            _ => return false,
        };
        target.len() == 1 && value.last() == target.last() && value.len() <= 2
    }

    fn on_conflict(&mut self, conflict: &OnConflict) -> Walk {
        let OnConflict {
            conflict_target,
            action,
        } = conflict;
        match conflict_target {
            None => {}
            Some(ConflictTarget::Columns(columns)) => {
                for column in columns {
                    self.column_ident(column)?;
                }
            }
            Some(ConflictTarget::OnConstraint(name)) => {
                if name.0.len() != 1 {
                    return refuse(format!("constraint `{name}` must be written unqualified"));
                }
            }
        }
        match action {
            OnConflictAction::DoNothing => Ok(()),
            OnConflictAction::DoUpdate(DoUpdate {
                assignments,
                selection,
            }) => {
                self.need(StatementKind::Upsert, "INSERT ... ON CONFLICT DO UPDATE");
                // PostgreSQL's proposed row.
                self.add_qualifier(vec![fold(self.driver(), "excluded")]);
                self.assignments(assignments)?;
                self.opt_expr(selection.as_ref())
            }
        }
    }

    fn update(&mut self, update: &Update) -> Walk {
        let Update {
            update_token: _,
            optimizer_hints,
            table,
            assignments,
            from,
            selection,
            returning,
            output,
            or,
            order_by,
            limit,
        } = update;
        if !optimizer_hints.is_empty() {
            return refuse("optimizer hints are refused in statements");
        }
        if output.is_some() || or.is_some() {
            return refuse("this form of UPDATE is not reviewed and not allowed");
        }
        self.need(StatementKind::Update, "UPDATE");
        self.scoped(|w| {
            w.table_with_joins(table)?;
            match from {
                None => {}
                Some(UpdateTableFromKind::BeforeSet(tables))
                | Some(UpdateTableFromKind::AfterSet(tables)) => {
                    for table in tables {
                        w.table_with_joins(table)?;
                    }
                }
            }
            w.assignments(assignments)?;
            w.opt_expr(selection.as_ref())?;
            w.order_by_exprs(order_by)?;
            w.opt_expr(limit.as_ref())?;
            w.returning(returning.as_deref())
        })
    }

    fn delete(&mut self, delete: &Delete) -> Walk {
        let Delete {
            delete_token: _,
            optimizer_hints,
            tables,
            from,
            using,
            selection,
            returning,
            output,
            order_by,
            limit,
        } = delete;
        if !optimizer_hints.is_empty() {
            return refuse("optimizer hints are refused in statements");
        }
        if output.is_some() {
            return refuse("this form of DELETE is not reviewed and not allowed");
        }
        self.need(StatementKind::Delete, "DELETE");
        self.scoped(|w| {
            let (FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from)) = from;
            for table in from {
                w.table_with_joins(table)?;
            }
            for table in using.iter().flatten() {
                w.table_with_joins(table)?;
            }
            for name in tables {
                let parts = normalise_parsed_name(w.driver(), name);
                if !w.qualifier_in_scope(&parts) {
                    return refuse(format!("table `{name}` is not granted"));
                }
            }
            w.opt_expr(selection.as_ref())?;
            w.order_by_exprs(order_by)?;
            w.opt_expr(limit.as_ref())?;
            w.returning(returning.as_deref())
        })
    }

    fn merge(&mut self, merge: &Merge) -> Walk {
        let Merge {
            merge_token: _,
            optimizer_hints,
            into: _,
            table,
            source,
            on,
            clauses,
            output,
        } = merge;
        if !optimizer_hints.is_empty() {
            return refuse("optimizer hints are refused in statements");
        }
        if output.is_some() {
            return refuse("MERGE ... OUTPUT is not allowed");
        }
        self.need(StatementKind::Merge, "MERGE");
        self.scoped(|w| {
            let TableFactor::Table { .. } = table else {
                return refuse("MERGE INTO must name a granted table");
            };
            w.table_factor(table)?;
            w.table_factor(source)?;
            w.expr(on)?;
            for clause in clauses {
                w.merge_clause(clause)?;
            }
            Ok(())
        })
    }

    fn merge_clause(&mut self, clause: &MergeClause) -> Walk {
        let MergeClause {
            when_token: _,
            clause_kind,
            predicate,
            action,
        } = clause;
        self.opt_expr(predicate.as_ref())?;
        match (clause_kind, action) {
            (
                MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget,
                MergeAction::Insert(insert),
            ) => {
                for column in &insert.columns {
                    self.column_name(column)?;
                }
                match &insert.kind {
                    MergeInsertKind::Values(values) => self.values(values)?,
                    _ => return refuse("MERGE ... INSERT must list its VALUES"),
                }
                self.opt_expr(insert.insert_predicate.as_ref())
            }
            (MergeClauseKind::Matched, MergeAction::Update(update)) => {
                self.need(StatementKind::Upsert, "MERGE ... WHEN MATCHED THEN UPDATE");
                match &update.kind {
                    MergeUpdateKind::Set(assignments) => self.assignments(assignments)?,
                    #[allow(unreachable_patterns)]
                    _ => return refuse("this MERGE update is not reviewed and not allowed"),
                }
                self.opt_expr(update.update_predicate.as_ref())?;
                if let Some(predicate) = &update.delete_predicate {
                    self.need(StatementKind::Delete, "MERGE ... DELETE WHERE");
                    self.expr(predicate)?;
                }
                Ok(())
            }
            (MergeClauseKind::Matched, MergeAction::Delete { .. }) => {
                self.need(StatementKind::Delete, "MERGE ... WHEN MATCHED THEN DELETE");
                Ok(())
            }
            (_, MergeAction::DoNothing { .. }) => Ok(()),
            _ => refuse("this MERGE clause is not reviewed and not allowed"),
        }
    }

    fn assignments(&mut self, assignments: &[Assignment]) -> Walk {
        for assignment in assignments {
            match &assignment.target {
                AssignmentTarget::ColumnName(name) => self.column_name(name)?,
                AssignmentTarget::Tuple(_) => {
                    return refuse("assignments to a column tuple are not allowed")
                }
            }
            self.expr(&assignment.value)?;
        }
        Ok(())
    }

    // ----- DDL ----------------------------------------------------------

    fn ddl(&mut self, statement: &Statement) -> Walk {
        self.scoped(|w| match statement {
            Statement::CreateTable(create) => {
                if create.query.is_some() {
                    return refuse("CREATE TABLE ... AS SELECT is not allowed");
                }
                // Rebuilt from the reviewed parts only: any other clause
                // (LIKE, CLONE, INHERITS, PARTITION OF, storage options ...)
                // makes the two differ.
                let reviewed = sqlparser::ast::helpers::stmt_create_table::CreateTableBuilder::new(
                    create.name.clone(),
                )
                .if_not_exists(create.if_not_exists)
                .columns(create.columns.clone())
                .constraints(create.constraints.clone())
                .table_options(create.table_options.clone())
                .build();
                if reviewed != *create {
                    return refuse("this form of CREATE TABLE is not allowed (only columns, primary key, unique and check constraints, and MySQL ENGINE/CHARSET)");
                }
                w.granted_table(&create.name)?;
                for column in &create.columns {
                    w.column_def(column)?;
                }
                for constraint in &create.constraints {
                    w.table_constraint(constraint)?;
                }
                w.table_options(&create.table_options)
            }
            Statement::CreateIndex(index) => {
                w.granted_table(&index.table_name)?;
                if let Some(name) = &index.name {
                    if name.0.len() != 1 {
                        return refuse(format!("index `{name}` must be written unqualified"));
                    }
                }
                if index.using.is_some()
                    || !index.with.is_empty()
                    || index.predicate.is_some()
                    || !index.index_options.is_empty()
                    || !index.alter_options.is_empty()
                {
                    return refuse("only CREATE [UNIQUE] INDEX [name] ON table (columns) is allowed");
                }
                for column in &index.columns {
                    w.index_column(column)?;
                }
                for column in &index.include {
                    w.column_ident(column)?;
                }
                Ok(())
            }
            Statement::AlterTable(alter) => {
                if alter.location.is_some() || alter.on_cluster.is_some() || alter.table_type.is_some() {
                    return refuse("this form of ALTER TABLE is not allowed");
                }
                w.granted_table(&alter.name)?;
                for operation in &alter.operations {
                    match operation {
                        AlterTableOperation::AddColumn {
                            column_def,
                            column_position: None,
                            ..
                        } => w.column_def(column_def)?,
                        AlterTableOperation::DropColumn {
                            column_names,
                            drop_behavior,
                            ..
                        } => {
                            if matches!(drop_behavior, Some(sqlparser::ast::DropBehavior::Cascade)) {
                                return refuse("DROP COLUMN ... CASCADE drops other objects: not allowed");
                            }
                            for column in column_names {
                                w.column_ident(column)?;
                            }
                        }
                        other => {
                            return refuse(format!(
                                "ALTER TABLE {other} is not allowed (only ADD COLUMN and DROP COLUMN on a granted table)"
                            ))
                        }
                    }
                }
                Ok(())
            }
            Statement::Drop {
                object_type,
                if_exists: _,
                names,
                cascade,
                restrict: _,
                purge: _,
                temporary: _,
                table,
            } => {
                if *object_type != ObjectType::Table {
                    return refuse(format!(
                        "DROP {object_type} is never granted: only the granted tables may be dropped"
                    ));
                }
                if *cascade {
                    return refuse("DROP ... CASCADE drops other objects: not allowed");
                }
                if table.is_some() {
                    return refuse("this form of DROP is not allowed");
                }
                for name in names {
                    w.granted_table(name)?;
                }
                Ok(())
            }
            Statement::Truncate(truncate) => {
                if truncate.partitions.is_some()
                    || truncate.cascade.is_some()
                    || truncate.on_cluster.is_some()
                {
                    return refuse("TRUNCATE with CASCADE, partitions or a cluster is not allowed");
                }
                for target in &truncate.table_names {
                    w.granted_table(&target.name)?;
                }
                Ok(())
            }
            _ => refuse("this schema change is never granted to plugins"),
        })
    }

    fn column_def(&mut self, column: &ColumnDef) -> Walk {
        let ColumnDef {
            name,
            data_type,
            options,
        } = column;
        self.column_ident(name)?;
        if matches!(
            data_type,
            sqlparser::ast::DataType::Regclass
                | sqlparser::ast::DataType::Table(_)
                | sqlparser::ast::DataType::NamedTable { .. }
        ) {
            return refuse(format!("column type {data_type} is not allowed"));
        }
        for option in options {
            match &option.option {
                ColumnOption::Null | ColumnOption::NotNull | ColumnOption::Comment(_) => {}
                ColumnOption::Default(expr) => self.expr(expr)?,
                ColumnOption::Check(check) => self.expr(&check.expr)?,
                ColumnOption::PrimaryKey(key) if key.columns.is_empty() => {}
                ColumnOption::Unique(key) if key.columns.is_empty() => {}
                other => {
                    return refuse(format!(
                        "column option `{other}` is not allowed (NULL, NOT NULL, DEFAULT, CHECK, PRIMARY KEY, UNIQUE)"
                    ))
                }
            }
        }
        Ok(())
    }

    fn table_constraint(&mut self, constraint: &TableConstraint) -> Walk {
        match constraint {
            TableConstraint::PrimaryKey(key) => {
                for column in &key.columns {
                    self.index_column(column)?;
                }
                Ok(())
            }
            TableConstraint::Unique(key) => {
                for column in &key.columns {
                    self.index_column(column)?;
                }
                Ok(())
            }
            TableConstraint::Check(check) => self.expr(&check.expr),
            other => refuse(format!(
                "table constraint `{other}` is not allowed (PRIMARY KEY, UNIQUE, CHECK)"
            )),
        }
    }

    /// A plain column of an index or key: an expression index would run
    /// its functions on every write.
    fn index_column(&mut self, column: &IndexColumn) -> Walk {
        if column.operator_class.is_some() || column.column.with_fill.is_some() {
            return refuse("index operator classes are not allowed");
        }
        match &column.column.expr {
            Expr::Identifier(ident) => self.column_ident(ident),
            other => refuse(format!(
                "index column `{other}` must be a plain column name"
            )),
        }
    }

    fn table_options(&mut self, options: &sqlparser::ast::CreateTableOptions) -> Walk {
        use sqlparser::ast::CreateTableOptions as O;
        let list = match options {
            O::None => return Ok(()),
            O::Plain(list) if self.driver() == SqlDriver::Mysql => list,
            _ => return refuse("table options are not allowed"),
        };
        const ALLOWED: &[&str] = &[
            "ENGINE",
            "CHARSET",
            "DEFAULT CHARSET",
            "CHARACTER SET",
            "DEFAULT CHARACTER SET",
            "COLLATE",
            "DEFAULT COLLATE",
        ];
        for option in list {
            match option {
                SqlOption::KeyValue { key, value }
                    if ALLOWED.contains(&key.value.to_ascii_uppercase().as_str())
                        && matches!(value, Expr::Identifier(_) | Expr::Value(_)) => {}
                // `ENGINE = InnoDB`, without engine parameters.
                SqlOption::NamedParenthesizedList(list)
                    if list.key.value.eq_ignore_ascii_case("ENGINE")
                        && list.name.is_some()
                        && list.values.is_empty() => {}
                other => {
                    return refuse(format!(
                        "table option `{other}` is not allowed (MySQL ENGINE, CHARSET, COLLATE)"
                    ))
                }
            }
        }
        Ok(())
    }

    // ----- queries ------------------------------------------------------

    fn query(&mut self, query: &Query) -> Walk {
        self.nested(|w| {
            let Query {
                with,
                body,
                order_by,
                limit_clause,
                fetch,
                locks,
                for_clause,
                settings,
                format_clause,
                pipe_operators,
            } = query;
            if !locks.is_empty() {
                return refuse("SELECT ... FOR UPDATE / FOR SHARE / LOCK IN SHARE MODE takes row locks: not allowed");
            }
            if for_clause.is_some()
                || settings.is_some()
                || format_clause.is_some()
                || !pipe_operators.is_empty()
            {
                return refuse("this query clause is not reviewed and not allowed");
            }
            let ctes_before = w.ctes.len();
            let outcome = (|| {
                if let Some(with) = with {
                    w.with(with)?;
                }
                w.scoped(|w| {
                    w.set_expr(body)?;
                    if let Some(order_by) = order_by {
                        w.order_by(order_by)?;
                    }
                    Ok(())
                })?;
                if let Some(limit) = limit_clause {
                    w.limit(limit)?;
                }
                if let Some(fetch) = fetch {
                    let Fetch {
                        with_ties: _,
                        percent: _,
                        quantity,
                    } = fetch;
                    w.opt_expr(quantity.as_ref())?;
                }
                Ok(())
            })();
            w.ctes.truncate(ctes_before);
            outcome
        })
    }

    fn with(&mut self, with: &With) -> Walk {
        let With {
            with_token: _,
            recursive,
            cte_tables,
        } = with;
        if *recursive {
            return refuse("WITH RECURSIVE is not allowed");
        }
        for cte in cte_tables {
            let Cte {
                alias,
                query,
                from,
                materialized: _,
                closing_paren_token: _,
            } = cte;
            if from.is_some() {
                return refuse("this form of WITH is not allowed");
            }
            self.scoped(|w| w.query(query))?;
            self.table_alias_columns(alias)?;
            let name = self.fold_ident(&alias.name);
            self.ctes.push(name);
        }
        Ok(())
    }

    fn set_expr(&mut self, body: &SetExpr) -> Walk {
        self.nested(|w| match body {
            SetExpr::Select(select) => w.select(select),
            SetExpr::Query(query) => w.scoped(|w| w.query(query)),
            SetExpr::SetOperation { left, right, .. } => {
                w.scoped(|w| w.set_expr(left))?;
                w.scoped(|w| w.set_expr(right))
            }
            SetExpr::Values(values) => w.values(values),
            SetExpr::Insert(statement)
            | SetExpr::Update(statement)
            | SetExpr::Delete(statement)
            | SetExpr::Merge(statement) => w.scoped(|w| w.statement(statement)),
            SetExpr::Table(_) => refuse(
                "the `TABLE name` query form is not allowed; write SELECT ... FROM a granted table",
            ),
        })
    }

    fn values(&mut self, values: &Values) -> Walk {
        if values.rows.len() > MAX_VALUES_ROWS {
            return refuse(format!(
                "VALUES lists {} rows; at most {MAX_VALUES_ROWS} are accepted",
                values.rows.len()
            ));
        }
        for row in &values.rows {
            for expr in &row.content {
                self.expr(expr)?;
            }
        }
        Ok(())
    }

    fn select(&mut self, select: &Select) -> Walk {
        let Select {
            select_token: _,
            optimizer_hints,
            distinct,
            select_modifiers,
            top,
            top_before_distinct: _,
            projection,
            exclude,
            into,
            from,
            lateral_views,
            prewhere,
            selection,
            connect_by,
            group_by,
            cluster_by,
            distribute_by,
            sort_by,
            having,
            named_window,
            qualify,
            window_before_qualify: _,
            value_table_mode,
            flavor,
        } = select;
        if !optimizer_hints.is_empty() {
            return refuse("optimizer hints are refused in statements");
        }
        if into.is_some() {
            return refuse("SELECT ... INTO is not allowed");
        }
        if !connect_by.is_empty() {
            return refuse("CONNECT BY is not allowed");
        }
        if select_modifiers.is_some()
            || top.is_some()
            || exclude.is_some()
            || !lateral_views.is_empty()
            || prewhere.is_some()
            || !cluster_by.is_empty()
            || !distribute_by.is_empty()
            || !sort_by.is_empty()
            || !named_window.is_empty()
            || qualify.is_some()
            || value_table_mode.is_some()
            || *flavor != SelectFlavor::Standard
        {
            return refuse("this SELECT clause is not reviewed and not allowed");
        }
        // FROM first: its names are what the other clauses may qualify by.
        for table in from {
            self.table_with_joins(table)?;
        }
        match distinct {
            None | Some(Distinct::Distinct) | Some(Distinct::All) => {}
            Some(Distinct::On(exprs)) => {
                for expr in exprs {
                    self.expr(expr)?;
                }
            }
        }
        self.select_items(projection)?;
        self.opt_expr(selection.as_ref())?;
        match group_by {
            GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
                for expr in exprs {
                    self.expr(expr)?;
                }
            }
            _ => return refuse("this GROUP BY is not allowed (list expressions)"),
        }
        self.opt_expr(having.as_ref())
    }

    /// A `RETURNING` list reads rows back: it needs its own kind.
    fn returning(&mut self, items: Option<&[SelectItem]>) -> Walk {
        match items {
            Some(items) => {
                self.need(StatementKind::Returning, "RETURNING");
                self.select_items(items)
            }
            None => Ok(()),
        }
    }

    fn select_items(&mut self, items: &[SelectItem]) -> Walk {
        for item in items {
            match item {
                SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                    self.expr(expr)?
                }
                SelectItem::Wildcard(options) => plain_wildcard(options)?,
                SelectItem::QualifiedWildcard(kind, options) => {
                    plain_wildcard(options)?;
                    match kind {
                        SelectItemQualifiedWildcardKind::ObjectName(name) => {
                            let parts = normalise_parsed_name(self.driver(), name);
                            if !self.qualifier_in_scope(&parts) {
                                return refuse(format!(
                                    "`{name}.*` names nothing in this query's FROM"
                                ));
                            }
                        }
                        SelectItemQualifiedWildcardKind::Expr(_) => {
                            return refuse("`(expression).*` is not allowed")
                        }
                    }
                }
                SelectItem::ExprWithAliases { .. } => {
                    return refuse("this select item is not reviewed and not allowed")
                }
            }
        }
        Ok(())
    }

    fn table_with_joins(&mut self, table: &TableWithJoins) -> Walk {
        self.nested(|w| {
            w.table_factor(&table.relation)?;
            for join in &table.joins {
                w.join(join)?;
            }
            Ok(())
        })
    }

    fn join(&mut self, join: &Join) -> Walk {
        let Join {
            relation,
            global,
            join_operator,
        } = join;
        if *global {
            return refuse("GLOBAL JOIN is not allowed");
        }
        self.table_factor(relation)?;
        let constraint = match join_operator {
            JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c)
            | JoinOperator::CrossJoin(c) => c,
            _ => return refuse("this kind of join is not reviewed and not allowed"),
        };
        match constraint {
            JoinConstraint::On(expr) => self.expr(expr),
            JoinConstraint::Using(columns) => {
                for column in columns {
                    self.column_name(column)?;
                }
                Ok(())
            }
            JoinConstraint::Natural | JoinConstraint::None => Ok(()),
        }
    }

    /// A table source: a granted table, a CTE of this statement, Oracle's
    /// `DUAL`, a subquery or a parenthesised join. Table functions
    /// (`LATERAL pg_sleep(10)`, `ROWS FROM`, `UNNEST`, `JSON_TABLE` ...)
    /// and everything else are refused.
    fn table_factor(&mut self, factor: &TableFactor) -> Walk {
        match factor {
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                if args.is_some() {
                    return refuse(format!(
                        "`{name}(...)` as a table source is a table function: not allowed"
                    ));
                }
                if !with_hints.is_empty()
                    || version.is_some()
                    || *with_ordinality
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || sample.is_some()
                    || !index_hints.is_empty()
                {
                    return refuse(format!(
                        "table `{name}` is used with a clause that is not reviewed (hints, samples, partitions, versions)"
                    ));
                }
                let parts = normalise_parsed_name(self.driver(), name);
                let is_cte = parts.len() == 1 && self.ctes.contains(&parts[0]);
                let is_dual = self.driver() == SqlDriver::Oracle && parts == ["DUAL"];
                if is_cte || is_dual {
                    self.add_qualifier(parts);
                } else {
                    self.granted_table(name)?;
                }
                if let Some(alias) = alias {
                    self.table_alias(alias)?;
                }
                Ok(())
            }
            TableFactor::Derived {
                lateral,
                subquery,
                alias,
                ..
            } => {
                if *lateral {
                    return refuse("LATERAL subqueries are not allowed");
                }
                self.scoped(|w| w.query(subquery))?;
                if let Some(alias) = alias {
                    self.table_alias(alias)?;
                }
                Ok(())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                self.table_with_joins(table_with_joins)?;
                if let Some(alias) = alias {
                    self.table_alias(alias)?;
                }
                Ok(())
            }
            TableFactor::Function { name, .. } => refuse(format!(
                "`{name}(...)` as a table source is a table function: not allowed"
            )),
            TableFactor::TableFunction { .. } | TableFactor::UNNEST { .. } => {
                refuse("table functions (TABLE(...), UNNEST, ROWS FROM) are not allowed as table sources")
            }
            _ => refuse("this table source is not reviewed and not allowed (only granted tables, CTEs and subqueries)"),
        }
    }

    fn table_alias(&mut self, alias: &TableAlias) -> Walk {
        self.table_alias_columns(alias)?;
        let name = self.fold_ident(&alias.name);
        self.add_qualifier(vec![name]);
        Ok(())
    }

    fn table_alias_columns(&mut self, alias: &TableAlias) -> Walk {
        if alias.at.is_some() {
            return refuse("this table alias is not allowed");
        }
        for column in &alias.columns {
            if column.data_type.is_some() {
                return refuse("typed alias columns are not allowed");
            }
            self.column_ident(&column.name)?;
        }
        Ok(())
    }

    fn order_by(&mut self, order_by: &OrderBy) -> Walk {
        if order_by.interpolate.is_some() {
            return refuse("ORDER BY ... INTERPOLATE is not allowed");
        }
        match &order_by.kind {
            OrderByKind::Expressions(exprs) => self.order_by_exprs(exprs),
            OrderByKind::All(_) => refuse("ORDER BY ALL is not allowed"),
        }
    }

    fn order_by_exprs(&mut self, exprs: &[OrderByExpr]) -> Walk {
        for expr in exprs {
            if expr.with_fill.is_some() {
                return refuse("ORDER BY ... WITH FILL is not allowed");
            }
            self.expr(&expr.expr)?;
        }
        Ok(())
    }

    fn limit(&mut self, limit: &LimitClause) -> Walk {
        match limit {
            LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            } => {
                if !limit_by.is_empty() {
                    return refuse("LIMIT ... BY is not allowed");
                }
                self.opt_expr(limit.as_ref())?;
                if let Some(Offset { value, rows: _ }) = offset {
                    self.expr(value)?;
                }
                Ok(())
            }
            LimitClause::OffsetCommaLimit { offset, limit } => {
                self.expr(offset)?;
                self.expr(limit)
            }
        }
    }

    // ----- names ----------------------------------------------------------

    fn qualifier_in_scope(&self, parts: &[String]) -> bool {
        self.scopes
            .iter()
            .rev()
            .any(|scope| scope.qualifiers.iter().any(|known| known == parts))
    }

    /// A bare column name.
    fn column_ident(&self, ident: &Ident) -> Walk {
        if ident.quote_style.is_none() && ident.value.starts_with('@') {
            return refuse(format!("`{}`: variables are not allowed", ident.value));
        }
        let folded = self.fold_ident(ident);
        if is_reserved_column(self.driver(), &folded) {
            return refuse(format!(
                "`{}` is a system column or pseudo-column: not allowed",
                ident.value
            ));
        }
        Ok(())
    }

    /// A column written `c`, `t.c` or `schema.t.c`: the qualifier must be
    /// a table, alias or CTE of the statement (else it could be a package,
    /// a sequence or a schema: `seq.NEXTVAL`, `dbms_x.y`).
    fn qualified_column(&self, parts: &[Ident]) -> Walk {
        let Some((column, qualifier)) = parts.split_last() else {
            return refuse("an empty name");
        };
        if qualifier.is_empty() {
            return self.column_ident(column);
        }
        let qualifier: Vec<String> = qualifier.iter().map(|part| self.fold_ident(part)).collect();
        if self.qualifier_in_scope(&qualifier) {
            self.column_ident(column)
        } else {
            let written: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
            refuse(format!(
                "`{}`: `{}` is not a table, alias or CTE of this statement (qualified names that could be functions, packages or sequences are not allowed)",
                written.join("."),
                qualifier.join(".")
            ))
        }
    }

    fn column_name(&self, name: &ObjectName) -> Walk {
        let mut idents = Vec::with_capacity(name.0.len());
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(ident) => idents.push(ident.clone()),
                ObjectNamePart::Function(_) => {
                    return refuse(format!("`{name}` is not a plain column name"))
                }
            }
        }
        self.qualified_column(&idents)
    }

    // ----- expressions ------------------------------------------------------

    fn opt_expr(&mut self, expr: Option<&Expr>) -> Walk {
        match expr {
            Some(expr) => self.expr(expr),
            None => Ok(()),
        }
    }

    fn expr(&mut self, expr: &Expr) -> Walk {
        self.nested(|w| w.expr_inner(expr))
    }

    fn expr_inner(&mut self, expr: &Expr) -> Walk {
        match expr {
            Expr::Identifier(ident) => self.qualified_column(std::slice::from_ref(ident)),
            Expr::CompoundIdentifier(parts) => self.qualified_column(parts),
            Expr::Value(value) => self.value(&value.value),
            Expr::IsFalse(e)
            | Expr::IsNotFalse(e)
            | Expr::IsTrue(e)
            | Expr::IsNotTrue(e)
            | Expr::IsNull(e)
            | Expr::IsNotNull(e)
            | Expr::IsUnknown(e)
            | Expr::IsNotUnknown(e)
            | Expr::Nested(e) => self.expr(e),
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.expr(a)?;
                self.expr(b)
            }
            Expr::InList { expr, list, .. } => {
                self.expr(expr)?;
                for item in list {
                    self.expr(item)?;
                }
                Ok(())
            }
            Expr::InSubquery { expr, subquery, .. } => {
                self.expr(expr)?;
                self.scoped(|w| w.query(subquery))
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                self.expr(expr)?;
                self.expr(low)?;
                self.expr(high)
            }
            Expr::BinaryOp { left, op, right } => {
                if !is_allowed_binary_operator(self.driver(), op) {
                    return refuse(format!("operator `{op}` is not allowed"));
                }
                self.expr(left)?;
                self.expr(right)
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                if !is_allowed_binary_operator(self.driver(), compare_op) {
                    return refuse(format!("operator `{compare_op}` is not allowed"));
                }
                self.expr(left)?;
                self.expr(right)
            }
            Expr::Like {
                expr,
                pattern,
                escape_char,
                ..
            }
            | Expr::ILike {
                expr,
                pattern,
                escape_char,
                ..
            } => {
                self.expr(expr)?;
                self.expr(pattern)?;
                if let Some(escape) = escape_char {
                    self.expr(escape)?;
                }
                Ok(())
            }
            Expr::UnaryOp { op, expr } => {
                if !is_allowed_unary_operator(op) {
                    return refuse(format!("operator `{op}` is not allowed"));
                }
                self.expr(expr)
            }
            Expr::Cast {
                expr,
                data_type,
                format,
                ..
            } => {
                if format.is_some() {
                    return refuse("CAST ... FORMAT is not allowed");
                }
                if !is_allowed_cast_type(data_type) {
                    return refuse(format!("casts to `{data_type}` are not allowed"));
                }
                self.expr(expr)
            }
            Expr::TypedString(typed) => {
                if typed.uses_odbc_syntax {
                    return refuse("ODBC escapes are not allowed");
                }
                if !is_allowed_cast_type(&typed.data_type) {
                    return refuse(format!(
                        "`{} '...'` literals are not allowed",
                        typed.data_type
                    ));
                }
                self.value(&typed.value.value)
            }
            Expr::AtTimeZone {
                timestamp,
                time_zone,
            } => {
                self.expr(timestamp)?;
                self.expr(time_zone)
            }
            Expr::Extract { expr, .. } => self.expr(expr),
            Expr::Ceil { expr, field } | Expr::Floor { expr, field } => {
                if let sqlparser::ast::CeilFloorKind::Scale(value) = field {
                    self.value(&value.value)?;
                }
                self.expr(expr)
            }
            Expr::Position { expr, r#in } => {
                self.expr(expr)?;
                self.expr(r#in)
            }
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                self.expr(expr)?;
                if let Some(from) = substring_from {
                    self.expr(from)?;
                }
                if let Some(length) = substring_for {
                    self.expr(length)?;
                }
                Ok(())
            }
            Expr::Trim {
                expr,
                trim_what,
                trim_characters,
                ..
            } => {
                self.expr(expr)?;
                if let Some(what) = trim_what {
                    self.expr(what)?;
                }
                for character in trim_characters.iter().flatten() {
                    self.expr(character)?;
                }
                Ok(())
            }
            Expr::Function(function) => self.function(function),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                if let Some(operand) = operand {
                    self.expr(operand)?;
                }
                for when in conditions {
                    self.expr(&when.condition)?;
                    self.expr(&when.result)?;
                }
                if let Some(otherwise) = else_result {
                    self.expr(otherwise)?;
                }
                Ok(())
            }
            Expr::Exists { subquery, .. } | Expr::Subquery(subquery) => {
                self.scoped(|w| w.query(subquery))
            }
            Expr::Tuple(items) => {
                for item in items {
                    self.expr(item)?;
                }
                Ok(())
            }
            Expr::Interval(interval) => self.expr(&interval.value),
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                refuse("`*` is allowed only as a select item and in count(*)")
            }
            _ => refuse(format!(
                "the expression `{}` is of a kind that is not reviewed and not allowed",
                shorten(&expr.to_string())
            )),
        }
    }

    fn value(&self, value: &Value) -> Walk {
        match value {
            Value::Number(..) | Value::SingleQuotedString(_) | Value::Boolean(_) | Value::Null => {
                Ok(())
            }
            Value::Placeholder(text) if is_placeholder(self.driver(), text) => Ok(()),
            Value::Placeholder(text) => refuse(format!(
                "`{text}` is not a {} placeholder",
                self.driver().name()
            )),
            other => refuse(format!(
                "the literal `{}` is not allowed: only numbers, '...' strings, booleans, NULL and placeholders",
                shorten(&other.to_string())
            )),
        }
    }

    fn function(&mut self, function: &Function) -> Walk {
        let Function {
            name,
            uses_odbc_syntax,
            parameters,
            args,
            within_group,
            filter,
            null_treatment,
            over,
        } = function;
        let mut parts = Vec::with_capacity(name.0.len());
        for part in &name.0 {
            match part {
                ObjectNamePart::Identifier(ident) if ident.quote_style.is_none() => {
                    parts.push(ident.value.as_str())
                }
                _ => {
                    return refuse(format!(
                        "function `{name}` is not allowed (function names are written unquoted; see ALLOWED_FUNCTIONS in docs/sql-capability.md)"
                    ))
                }
            }
        }
        let joined = parts.join(".");
        if !is_allowed_function(&joined) {
            return refuse(format!(
                "function `{name}` is not allowed (see ALLOWED_FUNCTIONS in docs/sql-capability.md)"
            ));
        }
        if *uses_odbc_syntax {
            return refuse("ODBC escapes are not allowed");
        }
        if over.is_some() {
            return refuse(format!(
                "window functions (`{name}(...) OVER`) are not allowed"
            ));
        }
        if !within_group.is_empty() || filter.is_some() || null_treatment.is_some() {
            return refuse(format!(
                "`{name}` with WITHIN GROUP, FILTER or NULLS treatment is not allowed"
            ));
        }
        if !matches!(parameters, FunctionArguments::None) {
            return refuse(format!("`{name}` with parameters is not allowed"));
        }
        match args {
            FunctionArguments::None => Ok(()),
            FunctionArguments::Subquery(_) => {
                refuse(format!("`{name}(SELECT ...)` is not allowed"))
            }
            FunctionArguments::List(list) => self.function_args(&joined, list),
        }
    }

    fn function_args(&mut self, name: &str, list: &FunctionArgumentList) -> Walk {
        let FunctionArgumentList {
            duplicate_treatment: _,
            args,
            clauses,
        } = list;
        if !clauses.is_empty() {
            return refuse(format!(
                "`{name}(...)` with ORDER BY, LIMIT or other argument clauses is not allowed"
            ));
        }
        for arg in args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => self.expr(expr)?,
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard)
                    if name.eq_ignore_ascii_case("count") => {}
                _ => {
                    return refuse(format!(
                        "`{name}(...)`: only positional expression arguments are allowed"
                    ))
                }
            }
        }
        Ok(())
    }
}

fn plain_wildcard(options: &WildcardAdditionalOptions) -> Walk {
    let WildcardAdditionalOptions {
        wildcard_token: _,
        opt_ilike,
        opt_exclude,
        opt_except,
        opt_replace,
        opt_rename,
        opt_alias,
    } = options;
    if opt_ilike.is_some()
        || opt_exclude.is_some()
        || opt_except.is_some()
        || opt_replace.is_some()
        || opt_rename.is_some()
        || opt_alias.is_some()
    {
        return refuse("`*` with modifiers is not allowed");
    }
    Ok(())
}

/// At most a line of a construct, for a message.
fn shorten(text: &str) -> String {
    const MAX: usize = 80;
    let mut short: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        short.push_str("...");
    }
    short
}

/// A name for a statement that is never granted, for the message.
fn statement_name(statement: &Statement) -> &'static str {
    match statement {
        Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. } => {
            "transaction control (use the transaction's commit and rollback)"
        }
        Statement::Set { .. } => "SET",
        Statement::Call { .. } => "CALL",
        Statement::Copy { .. } => "COPY",
        Statement::Grant { .. } | Statement::Revoke { .. } => "GRANT and REVOKE",
        Statement::Lock { .. } | Statement::LockTables { .. } => "LOCK",
        Statement::Prepare { .. } | Statement::Execute { .. } | Statement::Deallocate { .. } => {
            "PREPARE, EXECUTE and DEALLOCATE"
        }
        Statement::LoadData { .. } => "LOAD DATA",
        Statement::CreateView { .. } | Statement::AlterView { .. } => "VIEW",
        Statement::CreateFunction { .. } | Statement::CreateProcedure { .. } => "CREATE FUNCTION",
        Statement::CreateSchema { .. } | Statement::CreateDatabase { .. } => "CREATE SCHEMA",
        Statement::CreateRole { .. } => "CREATE ROLE",
        Statement::CreateExtension { .. } => "CREATE EXTENSION",
        Statement::CreateSequence { .. } => "CREATE SEQUENCE",
        Statement::Comment { .. } => "COMMENT",
        Statement::Explain { .. } | Statement::ExplainTable { .. } => "EXPLAIN",
        Statement::Kill { .. } => "KILL",
        Statement::Use { .. } => "USE",
        _ => "these (not reviewed)",
    }
}
