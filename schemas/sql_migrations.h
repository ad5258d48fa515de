/*
 * Forward-only SQL migrations of the store, embedded from schemas/sql/NNNN_*.sql
 * in file-name order. Migration i (0-based) brings user_version from i to i+1.
 */
#ifndef OPD_SQL_MIGRATIONS_H
#define OPD_SQL_MIGRATIONS_H

extern const char *const opd_sql_migrations[]; /* NULL-terminated */

#endif
