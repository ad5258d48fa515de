'use strict';
// Small OpAMP agents for the UI test, written against the protocol by hand: the
// AgentToServer messages are encoded and the ServerToAgent answers decoded here,
// field numbers from schemas/opamp/v1/opamp.proto. Each agent sends its full state
// in every message (allowed by the spec: status compression is optional), so the
// server's ReportFullState flag needs no special handling.
//
// An agent talks plain HTTP (POST application/x-protobuf, polling every `interval`
// ms) or WebSocket (Node's WebSocket, a varint 0 header before each message, and
// a heartbeat every `interval` ms). What it does with a remote configuration is
// its `behaviour`: 'apply' reports APPLIED, 'fail' reports FAILED with `failMessage`,
// 'slow' reports APPLYING and stays there, 'silent' never reports.

const crypto = require('crypto');

// ---- protobuf encoding ----

function varint(n) {
	let v = BigInt(n);
	const out = [];
	do {
		let b = Number(v & 0x7fn);
		v >>= 7n;
		if (v > 0n) b |= 0x80;
		out.push(b);
	} while (v > 0n);
	return Buffer.from(out);
}

const key = (field, wt) => varint((field << 3) | wt);
const fVarint = (field, n) => Buffer.concat([key(field, 0), varint(n)]);
const fBytes = (field, b) => {
	const buf = Buffer.isBuffer(b) ? b : Buffer.from(b, 'utf8');
	return Buffer.concat([key(field, 2), varint(buf.length), buf]);
};
const fMsg = (field, parts) => fBytes(field, Buffer.concat(parts));
function fFixed64(field, n) {
	const b = Buffer.alloc(8);
	b.writeBigUInt64LE(BigInt(n));
	return Buffer.concat([key(field, 1), b]);
}

// KeyValue{key=1, value=AnyValue{string_value=1}}
const keyValue = (field, k, v) => fMsg(field, [fBytes(1, k), fMsg(2, [fBytes(1, String(v))])]);

// ComponentHealth: {healthy, status, lastError, startNs, components: {name: ComponentHealth}}
function componentHealth(field, ch) {
	const parts = [fVarint(1, ch.healthy ? 1 : 0)];
	if (ch.startNs) parts.push(fFixed64(2, ch.startNs));
	if (ch.lastError) parts.push(fBytes(3, ch.lastError));
	if (ch.status) parts.push(fBytes(4, ch.status));
	parts.push(fFixed64(5, BigInt(Date.now()) * 1000000n));
	for (const [name, sub] of Object.entries(ch.components || {})) {
		parts.push(fMsg(6, [fBytes(1, name), componentHealth(2, sub)]));
	}
	return fMsg(field, parts);
}

// AgentConfigMap{config_map=1: map<string, AgentConfigFile{body=1, content_type=2}>}
function configMap(field, files) {
	return fMsg(field, Object.entries(files).map(([name, f]) =>
		fMsg(1, [fBytes(1, name), fMsg(2, [fBytes(1, f.body), fBytes(2, f.contentType || '')])])));
}

// ---- protobuf decoding (only what the agent needs) ----

function readVarint(buf, pos) {
	let v = 0n;
	let shift = 0n;
	for (;;) {
		if (pos >= buf.length) throw new Error('truncated varint');
		const b = buf[pos++];
		v |= BigInt(b & 0x7f) << shift;
		if (!(b & 0x80)) return [v, pos];
		shift += 7n;
		if (shift > 63n) throw new Error('varint too long');
	}
}

// {field: [value...]}: varints as BigInt, length-delimited as Buffer.
function fields(buf) {
	const out = {};
	let pos = 0;
	while (pos < buf.length) {
		let k;
		[k, pos] = readVarint(buf, pos);
		const field = Number(k >> 3n);
		const wt = Number(k & 7n);
		let val;
		if (wt === 0) [val, pos] = readVarint(buf, pos);
		else if (wt === 1) (val = buf.readBigUInt64LE(pos)), (pos += 8);
		else if (wt === 5) (val = buf.readUInt32LE(pos)), (pos += 4);
		else if (wt === 2) {
			let len;
			[len, pos] = readVarint(buf, pos);
			val = buf.subarray(pos, pos + Number(len));
			pos += Number(len);
		} else throw new Error(`wire type ${wt}`);
		(out[field] = out[field] || []).push(val);
	}
	return out;
}

function decodeServerToAgent(buf) {
	const f = fields(buf);
	const msg = {flags: f[6] ? Number(f[6][0]) : 0};
	if (f[2]) {
		const e = fields(f[2][0]);
		msg.error = e[2] ? e[2][0].toString('utf8') : 'error';
	}
	if (f[3]) {
		const rc = fields(f[3][0]);
		const files = {};
		if (rc[1]) {
			for (const entry of fields(rc[1][0])[1] || []) {
				const e = fields(entry);
				const name = e[1] ? e[1][0].toString('utf8') : '';
				const file = e[2] ? fields(e[2][0]) : {};
				files[name] = {body: file[1] ? file[1][0].toString('utf8') : '',
					contentType: file[2] ? file[2][0].toString('utf8') : ''};
			}
		}
		msg.remoteConfig = {hash: rc[2] ? Buffer.from(rc[2][0]) : Buffer.alloc(0), files};
	}
	return msg;
}

// ---- the agent ----

const CAP = {
	ReportsStatus: 0x1, AcceptsRemoteConfig: 0x2, ReportsEffectiveConfig: 0x4,
	AcceptsOpAMPConnectionSettings: 0x100, ReportsHealth: 0x800, ReportsRemoteConfig: 0x1000,
	ReportsHeartbeat: 0x2000,
};
const RCS = {UNSET: 0, APPLIED: 1, APPLYING: 2, FAILED: 3};

class Agent {
	constructor(opts) {
		this.url = opts.url; // http://127.0.0.1:port/v1/opamp
		this.transport = opts.transport || 'http';
		this.ident = opts.ident || {};
		this.nonident = opts.nonident || {};
		this.health = opts.health || {healthy: true, status: 'StatusOK'};
		this.behaviour = opts.behaviour || 'apply';
		this.failMessage = opts.failMessage || 'failed to apply';
		this.acceptsRemoteConfig = opts.acceptsRemoteConfig !== false;
		this.interval = opts.interval || 1000;
		this.uid = crypto.randomBytes(16);
		this.uidHex = this.uid.toString('hex');
		this.seq = 0;
		this.rcs = null; // {hash, status, message}
		this.effective = {}; // files
		this.received = []; // hex hashes of remote configs, in order
		this.errors = [];
		this.timer = null;
		this.ws = null;
		this.stopped = false;
		this.inflight = false;
		this.pendingCsr = null; // a CSR (PEM) for the next message
	}

	// Ask for a certificate: the next message carries a ConnectionSettingsRequest with csr.
	requestCert(csr) {
		this.pendingCsr = csr;
	}

	capabilities() {
		let c = CAP.ReportsStatus | CAP.ReportsEffectiveConfig | CAP.ReportsHealth |
			CAP.ReportsHeartbeat | CAP.AcceptsOpAMPConnectionSettings;
		if (this.acceptsRemoteConfig) c |= CAP.AcceptsRemoteConfig | CAP.ReportsRemoteConfig;
		return c;
	}

	encode(extra = []) {
		const desc = fMsg(3, [
			...Object.entries(this.ident).map(([k, v]) => keyValue(1, k, v)),
			...Object.entries(this.nonident).map(([k, v]) => keyValue(2, k, v)),
		]);
		const parts = [fBytes(1, this.uid), fVarint(2, this.seq++), desc, fVarint(4, this.capabilities()),
			componentHealth(5, this.health)];
		if (Object.keys(this.effective).length) parts.push(fMsg(6, [configMap(1, this.effective)]));
		if (this.rcs) {
			parts.push(fMsg(7, [fBytes(1, this.rcs.hash), fVarint(2, this.rcs.status),
				...(this.rcs.message ? [fBytes(3, this.rcs.message)] : [])]));
		}
		if (this.pendingCsr) {
			// ConnectionSettingsRequest{opamp=1: OpAMPConnectionSettingsRequest{
			// certificate_request=1: CertificateRequest{csr=1}}}, AgentToServer field 11.
			parts.push(fMsg(11, [fMsg(1, [fMsg(1, [fBytes(1, this.pendingCsr)])])]));
			this.pendingCsr = null;
		}
		parts.push(...extra);
		return Buffer.concat(parts);
	}

	// What the agent does with one ServerToAgent; returns true when it has news to report.
	onMessage(msg) {
		if (msg.error) this.errors.push(msg.error);
		const rc = msg.remoteConfig;
		if (!rc || !this.acceptsRemoteConfig) return false;
		const hex = rc.hash.toString('hex');
		if (this.rcs && this.rcs.hash.equals(rc.hash)) return false;
		this.received.push(hex);
		if (this.behaviour === 'apply') {
			this.rcs = {hash: rc.hash, status: RCS.APPLIED};
			this.effective = rc.files;
		} else if (this.behaviour === 'fail') {
			this.rcs = {hash: rc.hash, status: RCS.FAILED, message: this.failMessage};
		} else if (this.behaviour === 'slow') {
			this.rcs = {hash: rc.hash, status: RCS.APPLYING};
		} else {
			return false;
		}
		return true;
	}

	start() {
		if (this.transport === 'websocket') return this.startWs();
		const poll = async () => {
			if (this.stopped) return;
			await this.post();
			if (!this.stopped) this.timer = setTimeout(poll, this.interval);
		};
		poll();
		return Promise.resolve();
	}

	async post(extra) {
		if (this.inflight) return;
		this.inflight = true;
		try {
			for (let round = 0; round < 3; round++) {
				const res = await fetch(this.url, {
					method: 'POST',
					headers: {'Content-Type': 'application/x-protobuf'},
					body: this.encode(extra),
					signal: AbortSignal.timeout(5000),
				});
				const body = Buffer.from(await res.arrayBuffer());
				if (res.status !== 200) {
					this.errors.push(`HTTP ${res.status}`);
					return;
				}
				// News (an applied config) is reported at once rather than at the next poll.
				if (!this.onMessage(decodeServerToAgent(body)) || extra) return;
			}
		} catch (e) {
			if (!this.stopped) this.errors.push(String(e.message || e));
		} finally {
			this.inflight = false;
		}
	}

	startWs() {
		return new Promise((resolve, reject) => {
			const ws = new WebSocket(this.url.replace(/^http/, 'ws'));
			ws.binaryType = 'arraybuffer';
			this.ws = ws;
			const send = () => {
				if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.concat([varint(0), this.encode()]));
			};
			ws.onopen = () => {
				send();
				const beat = () => {
					if (this.stopped) return;
					send();
					this.timer = setTimeout(beat, this.interval);
				};
				this.timer = setTimeout(beat, this.interval);
				resolve();
			};
			ws.onerror = (e) => {
				this.errors.push('websocket error ' + (e.message || ''));
				reject(new Error('websocket error'));
			};
			ws.onmessage = (ev) => {
				const buf = Buffer.from(ev.data);
				try {
					const [header, pos] = readVarint(buf, 0);
					if (header !== 0n) throw new Error('header not 0');
					if (this.onMessage(decodeServerToAgent(buf.subarray(pos)))) send();
				} catch (e) {
					this.errors.push(String(e.message));
				}
			};
		});
	}

	// Say goodbye (AgentDisconnect) and stop: the server marks the agent disconnected.
	async disconnect() {
		this.stopped = true;
		clearTimeout(this.timer);
		const bye = fMsg(9, []);
		if (this.ws) {
			if (this.ws.readyState === WebSocket.OPEN) this.ws.send(Buffer.concat([varint(0), this.encode([bye])]));
			await new Promise((r) => setTimeout(r, 100));
			this.ws.close();
		} else {
			this.stopped = false;
			this.inflight = false;
			await this.post([bye]);
			this.stopped = true;
		}
	}

	stop() {
		this.stopped = true;
		clearTimeout(this.timer);
		if (this.ws) {
			try {
				this.ws.close();
			} catch {
				// already closed
			}
		}
	}
}

module.exports = {Agent};
