/*
 * WAL checkpoints on the store's thread: the writer's commits do not copy
 * pages into the database file below OPD_CKPT_MAX_PAGES, the thread does,
 * and past the maximum the writer does it itself.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "checkpointer.h"
#include "store.h"

struct fx {
	char dir[32];
	char path[64];
	struct opd_store st;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof *f);

	snprintf(f->dir, sizeof f->dir, "/tmp/opd-ckpt-XXXXXX");
	if (f == NULL || mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->path, sizeof f->path, "%s/store.db", f->dir);
	if (opd_store_open(&f->st, f->path) != 0)
		return -1;
	if (sqlite3_exec(f->st.db, "CREATE TABLE filler (b BLOB)", NULL, NULL, NULL) != SQLITE_OK)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[80];

	opd_store_close(&f->st);
	unlink(f->path);
	snprintf(p, sizeof p, "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof p, "%s-shm", f->path);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static long long file_size(const char *path)
{
	struct stat sb;

	return stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
}

/* pages new pages of about 4 KiB, in commits of 100. */
static void fill(struct fx *f, int pages)
{
	for (int done = 0; done < pages; done += 100) {
		assert_int_equal(sqlite3_exec(f->st.db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
		for (int i = 0; i < 100; i++)
			assert_int_equal(sqlite3_exec(f->st.db,
						      "INSERT INTO filler VALUES (zeroblob(3900))",
						      NULL, NULL, NULL),
					 SQLITE_OK);
		assert_int_equal(sqlite3_exec(f->st.db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	}
}

/* Wait (5 s at most) for the database file to grow past size. */
static long long wait_growth(const char *path, long long size)
{
	for (int i = 0; i < 500 && file_size(path) <= size; i++)
		nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
	return file_size(path);
}

static void test_thread_checkpoints(void **state)
{
	struct fx *f = *state;
	long long before;

	assert_non_null(f->st.ckpt);
	opd_checkpointer_pause(f->st.ckpt);
	before = file_size(f->path);
	/* Past the mark, below the maximum: sqlite's own checkpoint would have run (at 1000). */
	fill(f, OPD_CKPT_PAGES + OPD_CKPT_PAGES / 2);
	assert_int_equal(file_size(f->path), before); /* the writer copied nothing */
	opd_checkpointer_resume(f->st.ckpt);
	fill(f, 100); /* a commit past the mark asks the thread */
	/* Most of the rows of one page each (the last commits may still be in the WAL). */
	long long most = before + (OPD_CKPT_PAGES + OPD_CKPT_PAGES / 2 - 300LL) * 4096;
	assert_true(wait_growth(f->path, most) > most);
}

static void test_writer_checkpoints_past_the_maximum(void **state)
{
	struct fx *f = *state;
	long long before;

	opd_checkpointer_pause(f->st.ckpt);
	before = file_size(f->path);
	fill(f, OPD_CKPT_MAX_PAGES + 100);
	/* With the thread held, only the writer can have copied the pages. */
	assert_true(file_size(f->path) > before + (OPD_CKPT_MAX_PAGES - 512LL) * 4096);
	opd_checkpointer_resume(f->st.ckpt);
}

/*
 * A snapshot image mapped from the checkpointed file is what sqlite3_serialize
 * gives, stays so while writes go on (checkpoints held), and restores.
 */
static void test_image_from_file(void **state)
{
	struct fx *f = *state;
	sqlite3_int64 n = 0;
	uint8_t *fast, *again;
	unsigned char *slow;
	size_t len, len2;
	struct opd_store other;

	fill(f, 300);
	assert_int_equal(opd_store_serialize(&f->st, &fast, &len), 0);
	assert_int_equal(f->st.file_images, 1);
	slow = sqlite3_serialize(f->st.db, "main", &n, 0);
	assert_non_null(slow);
	assert_int_equal(len, (size_t)n);
	assert_memory_equal(fast, slow, len);
	/* Writes past the checkpoint mark leave the mapped image alone. */
	fill(f, OPD_CKPT_MAX_PAGES + 100);
	assert_memory_equal(fast, slow, len);
	/* A second image while the first is out is a copy. */
	assert_int_equal(opd_store_serialize(&f->st, &again, &len2), 0);
	assert_int_equal(f->st.file_images, 1);
	assert_true(len2 > len);
	opd_store_image_free(&f->st, again);
	assert_int_equal(opd_store_open(&other, ":memory:"), 0);
	assert_int_equal(opd_store_restore(&other, fast, len), 0);
	opd_store_close(&other);
	sqlite3_free(slow);
	opd_store_image_free(&f->st, fast);
	/* Released: checkpoints run again and the next image is mapped. */
	fill(f, 100);
	assert_int_equal(opd_store_serialize(&f->st, &fast, &len), 0);
	assert_int_equal(f->st.file_images, 2);
	opd_store_image_free(&f->st, fast);
}

/* A memory store has no WAL and no thread. */
static void test_memory_store_has_none(void **state)
{
	struct opd_store st;

	(void)state;
	assert_int_equal(opd_store_open(&st, ":memory:"), 0);
	assert_null(st.ckpt);
	opd_store_close(&st);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_thread_checkpoints, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_writer_checkpoints_past_the_maximum, setup,
					    teardown),
	    cmocka_unit_test_setup_teardown(test_image_from_file, setup, teardown),
	    cmocka_unit_test(test_memory_store_has_none),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
