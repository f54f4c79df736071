package redisstore

import "github.com/redis/go-redis/v9"

// The scripts keep all time in microseconds of Redis's own clock (TIME), so
// gateways' clocks never matter. Request and token limits are GCRA: a bucket
// stores its theoretical arrival time (TAT), the moment it would be full
// again; a request needing n tokens from a bucket refilling one token every T
// µs up to B tokens is admitted when max(TAT, now) + T·min(n, B) − T·B ≤ now,
// and moves TAT to max(TAT, now) + T·n. A TAT later than now + T·B is a debt:
// every request waits for it. Concurrency is a hash of gateway → "requests in
// flight:lease end"; a gateway whose lease ended (it died, or lost Redis) no
// longer counts, and the next admission removes it.
//
// A bucket is two keys: a string "request TAT:token TAT", which expires when
// the later one is reached (it means nothing after), and the concurrency hash,
// which expires with the last lease written to it.
// KEYS come in those pairs; ARGV is gateway, lease ms, tokens, then 5 per
// bucket: request interval µs or 0, request burst, token interval µs or 0,
// token burst, max concurrent or 0. Calls are counted: in Redis 7 each
// redis.call costs about 3 µs of its one thread, more than the command.

// prelude is the shared head of admitScript and settleScript.
const prelude = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gw, lease, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local nb = #KEYS / 2
local function limits(i)
	local a = 3 + (i - 1) * 5
	return tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
end
local function num(v)
	return string.format('%.0f', v)
end
-- tats reads a bucket's request and token TATs, at least now.
local function tats(key)
	local r, t = string.match(redis.call('GET', key) or '', '^(%d+):(%d+)$')
	return math.max(tonumber(r) or 0, now), math.max(tonumber(t) or 0, now)
end
-- store writes them, to expire when both are past, or deletes a full bucket.
local function store(key, r, t)
	local till = math.max(r, t)
	if till <= now then
		redis.call('DEL', key)
	else
		redis.call('SET', key, num(r) .. ':' .. num(t), 'PX', math.ceil((till - now) / 1000) + 1000)
	end
end
-- slot parses a concurrency field: requests in flight, lease end.
local function slot(v)
	local c, e = string.match(v or '', '^(-?%d+):(%d+)$')
	return tonumber(c) or 0, tonumber(e) or 0
end
`

// admitScript returns {admitted, then per bucket: request wait, remaining
// requests, request reset, token wait, remaining tokens, token reset,
// concurrency full}, waits and resets in µs.
var admitScript = redis.NewScript(prelude + `
local ok = 1
local rt, tt, full, mine = {}, {}, {}, {}
for i = 1, nb do
	local s, c = KEYS[2 * i - 1], KEYS[2 * i]
	local ri, rb, ti, tb, mc = limits(i)
	if ri > 0 or ti > 0 then
		rt[i], tt[i] = tats(s)
		if ri > 0 and rt[i] + ri - ri * rb > now then ok = 0 end
		if ti > 0 and tt[i] + ti * math.min(n, tb) - ti * tb > now then ok = 0 end
	end
	full[i], mine[i] = 0, 0
	if mc > 0 then
		local all = redis.call('HGETALL', c)
		local sum, gone = 0, {}
		for j = 1, #all, 2 do
			local k, e = slot(all[j + 1])
			if e <= now then
				gone[#gone + 1] = all[j]
			else
				sum = sum + k
				if all[j] == gw then mine[i] = k end
			end
		end
		if #gone > 0 then redis.call('HDEL', c, unpack(gone)) end
		if sum >= mc then
			full[i] = 1
			ok = 0
		end
	end
end
local out = {ok}
for i = 1, nb do
	local s, c = KEYS[2 * i - 1], KEYS[2 * i]
	local ri, rb, ti, tb, mc = limits(i)
	local rw, rrem, rres, tw, trem, tres = 0, 0, 0, 0, 0, 0
	if ri > 0 then
		rw = math.max(math.ceil(rt[i] + ri - ri * rb - now), 0)
		if ok == 1 then rt[i] = rt[i] + ri end
		rrem = math.floor(rb - (rt[i] - now) / ri)
		rres = math.ceil(rt[i] - now)
	end
	if ti > 0 then
		tw = math.max(math.ceil(tt[i] + ti * math.min(n, tb) - ti * tb - now), 0)
		if ok == 1 then tt[i] = tt[i] + ti * n end
		trem = math.floor(tb - (tt[i] - now) / ti)
		tres = math.ceil(tt[i] - now)
	end
	if ok == 1 then
		if ri > 0 or ti > 0 then
			store(s, rt[i], tt[i])
		end
		if mc > 0 then
			redis.call('HSET', c, gw, (mine[i] + 1) .. ':' .. num(now + lease * 1000))
			redis.call('PEXPIRE', c, lease)
		end
	end
	out[#out + 1] = rw
	out[#out + 1] = rrem
	out[#out + 1] = rres
	out[#out + 1] = tw
	out[#out + 1] = trem
	out[#out + 1] = tres
	out[#out + 1] = full[i]
end
return out
`)

// settleScript gives back n tokens (negative: charges them) and frees the
// gateway's concurrency slot in every bucket.
var settleScript = redis.NewScript(prelude + `
for i = 1, nb do
	local s, c = KEYS[2 * i - 1], KEYS[2 * i]
	local ri, rb, ti, tb, mc = limits(i)
	if ti > 0 and n ~= 0 then
		local r, t = tats(s)
		store(s, r, math.max(t - ti * n, now))
	end
	if mc > 0 then
		local k, e = slot(redis.call('HGET', c, gw))
		if k > 1 then
			redis.call('HSET', c, gw, (k - 1) .. ':' .. num(e))
		else
			redis.call('HDEL', c, gw)
		end
	end
end
return 1
`)

// leaseScript renews the gateway's leases: KEYS are concurrency hashes,
// ARGV is gateway, lease ms, then the gateway's count in flight for each,
// which it writes as it knows it (this restores counts a restarted Redis
// lost).
var leaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gw, lease = ARGV[1], tonumber(ARGV[2])
local ends = string.format('%.0f', now + lease * 1000)
for i = 1, #KEYS do
	redis.call('HSET', KEYS[i], gw, ARGV[2 + i] .. ':' .. ends)
	redis.call('PEXPIRE', KEYS[i], lease)
end
return 1
`)

// secretScript returns the shared key secret, storing ARGV[1] first if
// there is none, and renews its expiry (ARGV[2] ms).
var secretScript = redis.NewScript(`
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('GET', KEYS[1])
`)

// drainsScript returns the shared manual drains and renews their expiry
// (ARGV[1] ms).
var drainsScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
`)

// putDrainScript records a manual drain or undrain (ARGV[1] field, ARGV[2]
// value) and renews the hash's expiry (ARGV[3] ms).
var putDrainScript = redis.NewScript(`
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`)
