/*
 * Live bytes allocated by OpenSSL, for tests that measure what a connection
 * keeps: opd_ossl_count_install() replaces OpenSSL's allocator, so it must run
 * before OpenSSL's first allocation (first thing in main).
 */
#ifndef OPD_OSSL_COUNT_H
#define OPD_OSSL_COUNT_H

/* 0, or -1 (with a message on stderr) when OpenSSL has allocated already. */
int opd_ossl_count_install(void);

/* Bytes OpenSSL holds now. */
long long opd_ossl_live_bytes(void);

#endif
