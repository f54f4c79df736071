package redisstore

import "github.com/redis/go-redis/v9"

// The scripts keep all time in microseconds of Redis's own clock (TIME), so
// gateways' clocks never matter. Request and token limits are GCRA: a key
// stores its theoretical arrival time (TAT), the moment its bucket would be
// full again; a request needing n tokens from a bucket refilling one token
// every T µs up to B tokens is admitted when max(TAT, now) + T·min(n, B) −
// T·B ≤ now, and moves TAT to max(TAT, now) + T·n. A TAT later than
// now + T·B is a debt: every request waits for it. Concurrency is a hash of
// gateway → requests in flight plus a sorted set of gateway → lease end; a
// gateway whose lease ended (it died, or lost Redis) no longer counts.
//
// Every key gets an expiry: a TAT key when its bucket will be full (it
// means nothing after), concurrency keys the lease.
//
// Buckets come as 4 KEYS (requests TAT, tokens TAT, concurrency counts,
// concurrency leases) and 5 ARGV (request interval µs or 0, request burst,
// token interval µs or 0, token burst, max concurrent or 0), after ARGV
// gateway, lease ms, tokens.

// prelude is the shared head of admitScript and settleScript.
const prelude = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gw, lease, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local nb = #KEYS / 4
local function limits(i)
	local a = 3 + (i - 1) * 5
	return tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
end
local function tat(key)
	local v = redis.call('GET', key)
	if v then
		return math.max(tonumber(v), now)
	end
	return now
end
local function store(key, v)
	if v <= now then
		redis.call('DEL', key)
	else
		redis.call('SET', key, string.format('%.0f', v), 'PX', math.ceil((v - now) / 1000) + 1000)
	end
end
`

// admitScript returns {admitted, then per bucket: request wait, remaining
// requests, request reset, token wait, remaining tokens, token reset,
// concurrency full}, waits and resets in µs.
var admitScript = redis.NewScript(prelude + `
local ok = 1
local rt, tt, full = {}, {}, {}
for i = 1, nb do
	local k = (i - 1) * 4
	local ri, rb, ti, tb, mc = limits(i)
	if ri > 0 then
		rt[i] = tat(KEYS[k + 1])
		if rt[i] + ri - ri * rb > now then ok = 0 end
	end
	if ti > 0 then
		tt[i] = tat(KEYS[k + 2])
		if tt[i] + ti * math.min(n, tb) - ti * tb > now then ok = 0 end
	end
	full[i] = 0
	if mc > 0 then
		local gone = redis.call('ZRANGEBYSCORE', KEYS[k + 4], '-inf', now)
		if #gone > 0 then
			redis.call('HDEL', KEYS[k + 3], unpack(gone))
			redis.call('ZREMRANGEBYSCORE', KEYS[k + 4], '-inf', now)
		end
		local sum = 0
		for _, v in ipairs(redis.call('HVALS', KEYS[k + 3])) do sum = sum + tonumber(v) end
		if sum >= mc then
			full[i] = 1
			ok = 0
		end
	end
end
local out = {ok}
for i = 1, nb do
	local k = (i - 1) * 4
	local ri, rb, ti, tb, mc = limits(i)
	local rw, rrem, rres, tw, trem, tres = 0, 0, 0, 0, 0, 0
	if ri > 0 then
		rw = math.max(math.ceil(rt[i] + ri - ri * rb - now), 0)
		if ok == 1 then
			rt[i] = rt[i] + ri
			store(KEYS[k + 1], rt[i])
		end
		rrem = math.floor(rb - (rt[i] - now) / ri)
		rres = math.ceil(rt[i] - now)
	end
	if ti > 0 then
		tw = math.max(math.ceil(tt[i] + ti * math.min(n, tb) - ti * tb - now), 0)
		if ok == 1 then
			tt[i] = tt[i] + ti * n
			store(KEYS[k + 2], tt[i])
		end
		trem = math.floor(tb - (tt[i] - now) / ti)
		tres = math.ceil(tt[i] - now)
	end
	if ok == 1 and mc > 0 then
		redis.call('HINCRBY', KEYS[k + 3], gw, 1)
		redis.call('ZADD', KEYS[k + 4], now + lease * 1000, gw)
		redis.call('PEXPIRE', KEYS[k + 3], lease)
		redis.call('PEXPIRE', KEYS[k + 4], lease)
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
	local k = (i - 1) * 4
	local ri, rb, ti, tb, mc = limits(i)
	if ti > 0 and n ~= 0 then
		store(KEYS[k + 2], math.max(tat(KEYS[k + 2]) - ti * n, now))
	end
	if mc > 0 then
		if redis.call('HINCRBY', KEYS[k + 3], gw, -1) <= 0 then
			redis.call('HDEL', KEYS[k + 3], gw)
			redis.call('ZREM', KEYS[k + 4], gw)
		end
	end
end
return 1
`)

// leaseScript renews the gateway's leases: KEYS come in pairs (counts,
// leases), ARGV is gateway, lease ms, then the gateway's count in flight
// for each pair, which it writes as it knows it (this restores counts a
// restarted Redis lost).
var leaseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local gw, lease = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS / 2 do
	redis.call('HSET', KEYS[2 * i - 1], gw, ARGV[2 + i])
	redis.call('ZADD', KEYS[2 * i], now + lease * 1000, gw)
	redis.call('PEXPIRE', KEYS[2 * i - 1], lease)
	redis.call('PEXPIRE', KEYS[2 * i], lease)
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
