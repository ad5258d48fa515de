/*
 * A line diff in unified format for "opampd config diff": Myers' O(ND) greedy algorithm over the
 * lines that differ once the common head and tail are set aside, then hunks with context, as
 * diff -u prints them. Pure: two texts in, text out.
 */
#include "cli.h"

#include "mem.h"

#include <stdlib.h>
#include <string.h>

/* Past this many edits the trace (D² ints) would take more than 64 MiB: show a replacement. */
#define MAX_EDITS 4000

enum op { OP_EQ, OP_DEL, OP_INS };

struct line {
	const char *p;
	size_t len; /* including the '\n' when there is one */
};

struct edit {
	enum op op;
	size_t a, b; /* line index in a (EQ, DEL) and in b (EQ, INS) */
};

static size_t count_lines(const char *s, size_t n)
{
	size_t lines = 0;

	for (size_t i = 0; i < n; i++)
		if (s[i] == '\n')
			lines++;
	return lines + (n > 0 && s[n - 1] != '\n');
}

static struct line *split(const char *s, size_t n, size_t count)
{
	struct line *v = opd_xcalloc(count + 1, sizeof *v);
	size_t k = 0, start = 0;

	for (size_t i = 0; i < n; i++) {
		if (s[i] == '\n') {
			v[k++] = (struct line){s + start, i + 1 - start};
			start = i + 1;
		}
	}
	if (start < n)
		v[k++] = (struct line){s + start, n - start};
	return v;
}

static int same(const struct line *x, const struct line *y)
{
	return x->len == y->len && memcmp(x->p, y->p, x->len) == 0;
}

/*
 * Myers over a[0..n) and b[0..m): append the edit script to e (offsets added). Returns 0, or -1
 * when more than MAX_EDITS edits are needed (nothing appended).
 */
static int myers(const struct line *a, size_t n, const struct line *b, size_t m, size_t off_a,
		 size_t off_b, struct edit *e, size_t *ne)
{
	size_t max = n + m, dmax = max < MAX_EDITS ? max : MAX_EDITS, d, found = (size_t)-1;
	long **trace = opd_xcalloc(dmax + 1, sizeof *trace);
	struct edit *rev;
	size_t nrev = 0;
	long x, y, k;

	for (d = 0; d <= dmax && found == (size_t)-1; d++) {
		long *v = opd_xcalloc(2 * d + 1, sizeof *v), *prev = d > 0 ? trace[d - 1] : NULL;
		long ld = (long)d;

		trace[d] = v;
		for (k = -ld; k <= ld; k += 2) {
			/* prev is indexed k + (d - 1). */
			if (d == 0)
				x = 0;
			else if (k == -ld ||
				 (k != ld && prev[k - 1 + ld - 1] < prev[k + 1 + ld - 1]))
				x = prev[k + 1 + ld - 1]; /* down: an insertion */
			else
				x = prev[k - 1 + ld - 1] + 1; /* right: a deletion */
			y = x - k;
			while (x < (long)n && y < (long)m && same(&a[x], &b[y])) {
				x++;
				y++;
			}
			v[k + ld] = x;
			if (x >= (long)n && y >= (long)m) {
				found = d;
				break;
			}
		}
	}
	if (found == (size_t)-1) {
		for (d = 0; d <= dmax; d++)
			free(trace[d]);
		free(trace);
		return -1;
	}
	/* Walk back from (n, m), collecting edits in reverse. */
	rev = opd_xcalloc(n + m + 1, sizeof *rev);
	x = (long)n;
	y = (long)m;
	for (d = found; d > 0; d--) {
		long ld = (long)d, *prev = trace[d - 1], pk, px, py, mx;

		k = x - y;
		if (k == -ld || (k != ld && prev[k - 1 + ld - 1] < prev[k + 1 + ld - 1]))
			pk = k + 1;
		else
			pk = k - 1;
		px = prev[pk + ld - 1];
		py = px - pk;
		/* The edit led from (px, py) to mid; a snake of equal lines from mid to (x, y). */
		mx = pk == k + 1 ? px : px + 1;
		while (x > mx) {
			x--;
			y--;
			rev[nrev++] = (struct edit){OP_EQ, (size_t)x, (size_t)y};
		}
		if (pk == k + 1)
			rev[nrev++] = (struct edit){OP_INS, (size_t)px, (size_t)py};
		else
			rev[nrev++] = (struct edit){OP_DEL, (size_t)px, (size_t)py};
		x = px;
		y = py;
	}
	while (x > 0 && y > 0) {
		x--;
		y--;
		rev[nrev++] = (struct edit){OP_EQ, (size_t)x, (size_t)y};
	}
	while (nrev > 0) {
		struct edit ed = rev[--nrev];
		ed.a += off_a;
		ed.b += off_b;
		e[(*ne)++] = ed;
	}
	free(rev);
	for (d = 0; d <= found; d++)
		free(trace[d]);
	free(trace);
	return 0;
}

static void put_line(struct opd_buf *out, char mark, const struct line *l)
{
	size_t n = l->len;
	int nl = n > 0 && l->p[n - 1] == '\n';

	opd_buf_append_byte(out, (uint8_t)mark);
	opd_buf_append(out, l->p, nl ? n - 1 : n);
	opd_buf_append_byte(out, '\n');
	if (!nl)
		opd_buf_appendf(out, "\\ No newline at end of file\n");
}

/* "-start,count" as diff -u writes it: ",1" left out, start one before when count is 0. */
static void put_range(struct opd_buf *out, char sign, size_t start, size_t count)
{
	if (count == 1)
		opd_buf_appendf(out, "%c%zu", sign, start + 1);
	else
		opd_buf_appendf(out, "%c%zu,%zu", sign, count == 0 ? start : start + 1, count);
}

size_t opd_cli_diff(const char *a_text, size_t a_len, const char *b_text, size_t b_len,
		    const char *a_name, const char *b_name, int ctx, struct opd_buf *out)
{
	size_t n = count_lines(a_text, a_len), m = count_lines(b_text, b_len);
	size_t head = 0, tail = 0, ne = 0, changed = 0, i;
	struct line *a, *b;
	struct edit *e;

	if (a_len == b_len && memcmp(a_text, b_text, a_len) == 0)
		return 0;
	opd_buf_appendf(out, "--- %s\n+++ %s\n", a_name, b_name);
	if (n + m > OPD_CLI_DIFF_MAX_LINES) {
		/* Counting needed no memory; splitting would. */
		opd_buf_appendf(out, "@@ files differ: %zu and %zu lines, too many to compare @@\n",
				n, m);
		return n + m;
	}
	a = split(a_text, a_len, n);
	b = split(b_text, b_len, m);
	while (head < n && head < m && same(&a[head], &b[head]))
		head++;
	while (tail < n - head && tail < m - head && same(&a[n - 1 - tail], &b[m - 1 - tail]))
		tail++;
	e = opd_xcalloc(n + m + 1, sizeof *e);
	for (i = 0; i < head; i++)
		e[ne++] = (struct edit){OP_EQ, i, i};
	if (myers(a + head, n - head - tail, b + head, m - head - tail, head, head, e, &ne) != 0) {
		/* Too different to be worth aligning: everything in between is replaced. */
		for (i = head; i < n - tail; i++)
			e[ne++] = (struct edit){OP_DEL, i, head};
		for (i = head; i < m - tail; i++)
			e[ne++] = (struct edit){OP_INS, n - tail, i};
	}
	for (i = 0; i < tail; i++)
		e[ne++] = (struct edit){OP_EQ, n - tail + i, m - tail + i};

	/* Hunks: runs of changes joined when fewer than 2*ctx equal lines separate them. */
	for (i = 0; i < ne;) {
		size_t start, end, j, last_change, ca = 0, cb = 0, a0, b0;

		while (i < ne && e[i].op == OP_EQ)
			i++;
		if (i == ne)
			break;
		start = i >= (size_t)ctx ? i - (size_t)ctx : 0;
		last_change = i;
		for (j = i; j < ne; j++) {
			if (e[j].op != OP_EQ)
				last_change = j;
			else if (j - last_change > (size_t)(2 * ctx))
				break;
		}
		end = last_change + 1 + (size_t)ctx;
		if (end > ne)
			end = ne;
		for (j = start; j < end; j++) {
			ca += e[j].op != OP_INS;
			cb += e[j].op != OP_DEL;
		}
		a0 = e[start].a;
		b0 = e[start].b;
		opd_buf_appendf(out, "@@ ");
		put_range(out, '-', a0, ca);
		opd_buf_appendf(out, " ");
		put_range(out, '+', b0, cb);
		opd_buf_appendf(out, " @@\n");
		for (j = start; j < end; j++) {
			if (e[j].op == OP_EQ) {
				put_line(out, ' ', &a[e[j].a]);
			} else if (e[j].op == OP_DEL) {
				put_line(out, '-', &a[e[j].a]);
				changed++;
			} else {
				put_line(out, '+', &b[e[j].b]);
				changed++;
			}
		}
		i = end;
	}
	free(e);
	free(a);
	free(b);
	return changed;
}
