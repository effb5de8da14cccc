<?php
// The real peer, for scripts/bench.py (figure `symfony`): one side of the comparison against
// Symfony Cache's RedisTagAwareAdapter, driven from PHP through phpredis.
//   php scripts/bench/peer.php SIDE PORT N
// SIDE is `symfony` (the adapter through its own API: saveDeferred + commit, getItems,
// invalidateTags), `tagcache` (CACHE.SET in pipelines, CACHE.MGET, CACHE.INVALIDATE TAG, over
// rawCommand) or `tagcache-mset` (the same with one CACHE.MSET per batch of saves). Run it against a fresh server. Entry i has a 100-byte value and three tags: `all`
// (shared by every entry), `g.(i % 100)` (1% of them) and `i.i` (its own). Prints one JSON object
// of raw figures; the ratios are bench.py's.

require_once '/usr/share/php/Symfony/Component/Cache/autoload.php';

use Symfony\Component\Cache\Adapter\RedisTagAwareAdapter;

[$side, $port, $n] = [$argv[1], (int) $argv[2], (int) $argv[3]];
const BATCH = 1000;
const LIFETIME = 3600;
$value = str_repeat('x', 100);

function connect(int $port): Redis
{
    $r = new Redis();
    $r->connect('127.0.0.1', $port);
    return $r;
}

$redis = connect($port);

// The server's CPU time so far (getrusage of the whole process, in seconds).
function cpu(Redis $r): float
{
    $info = $r->info('cpu');
    return (float) $info['used_cpu_sys'] + (float) $info['used_cpu_user'];
}

function used_memory(Redis $r): int
{
    return (int) $r->info('memory')['used_memory'];
}

function tags_of(int $i): array
{
    return ['all', 'g.' . ($i % 100), 'i.' . $i];
}

function key_of(int $i): string
{
    return sprintf('e.%09d', $i);
}

// A second connection in a child process pings until told to stop; returns a function that
// stops it and gives its longest round trip in ms.
function start_pinger(int $port): callable
{
    $out = tempnam(sys_get_temp_dir(), 'tagcache-ping-');
    $pid = pcntl_fork();
    if ($pid === 0) {
        $probe = connect($port);
        $stop = false;
        pcntl_async_signals(true);
        pcntl_signal(SIGTERM, function () use (&$stop) { $stop = true; });
        $worst = 0.0;
        while (!$stop) {
            $t = hrtime(true);
            $probe->ping();
            $worst = max($worst, (hrtime(true) - $t) / 1e6);
            usleep(500);
        }
        file_put_contents($out, (string) $worst);
        exit(0);
    }
    usleep(100000);
    return function () use ($pid, $out): float {
        usleep(50000);
        posix_kill($pid, SIGTERM);
        pcntl_waitpid($pid, $status);
        $worst = (float) file_get_contents($out);
        unlink($out);
        return $worst;
    };
}

if ($side === 'symfony') {
    $cache = new RedisTagAwareAdapter($redis, 'bench');
    $save = function (array $ids, int $lifetime) use ($cache, $value) {
        foreach ($ids as $i) {
            $item = $cache->getItem(key_of($i));
            $item->set($value)->expiresAfter($lifetime)->tag(tags_of($i));
            $cache->saveDeferred($item);
        }
        $cache->commit();
    };
    $read = function (array $ids) use ($cache) {
        $hits = 0;
        foreach ($cache->getItems(array_map('key_of', $ids)) as $item) {
            $hits += $item->isHit() ? 1 : 0;
        }
        return $hits;
    };
    $invalidate = function (string $tag) use ($cache) {
        $cache->invalidateTags([$tag]);
    };
} elseif ($side === 'tagcache-mset') {
    // As Symfony's commit maps onto it: one CACHE.MSET per batch, the lifetime shared, each
    // entry with its own tags.
    $save = function (array $ids, int $lifetime) use ($redis, $value) {
        $args = ['EX', (string) $lifetime];
        foreach ($ids as $i) {
            array_push($args, 'ENTRY', key_of($i), $value, 'TAGS', '3', ...tags_of($i));
        }
        $reply = $redis->rawCommand('CACHE.MSET', ...$args);
        if ($reply !== true && $reply !== 'OK') {
            throw new RuntimeException('CACHE.MSET: ' . var_export($reply, true));
        }
    };
}
if ($side !== 'symfony') {
    $save ??= function (array $ids, int $lifetime) use ($redis, $value) {
        $redis->multi(Redis::PIPELINE);
        foreach ($ids as $i) {
            $redis->rawCommand('CACHE.SET', key_of($i), $value, 'EX', (string) $lifetime,
                'TAGS', '3', ...tags_of($i));
        }
        foreach ($redis->exec() as $reply) {
            if ($reply !== true && $reply !== 'OK') {
                throw new RuntimeException('CACHE.SET: ' . var_export($reply, true));
            }
        }
    };
    $read = function (array $ids) use ($redis) {
        $values = $redis->rawCommand('CACHE.MGET', ...array_map('key_of', $ids));
        return count(array_filter($values, fn ($v) => $v !== false && $v !== null));
    };
    $invalidate = function (string $tag) use ($redis) {
        $redis->rawCommand('CACHE.INVALIDATE', 'TAG', $tag);
    };
}

$batches = array_chunk(range(0, $n - 1), BATCH);
$fig = ['side' => $side, 'entries' => $n, 'batch' => BATCH];

// Writes: N entries in batches.
$mem = used_memory($redis);
$c = cpu($redis);
foreach ($batches as $ids) {
    $save($ids, LIFETIME);
}
$fig['cpu_save_s'] = cpu($redis) - $c;
$fig['memory_bytes'] = used_memory($redis) - $mem;

// Reads: all of them, a batch at a time.
$c = cpu($redis);
$hits = 0;
foreach ($batches as $ids) {
    $hits += $read($ids);
}
$fig['cpu_read_s'] = cpu($redis) - $c;
$fig['read_hits'] = $hits;

// A 1% tag: 1 000 of 100 000 entries.
$small = intdiv($n, 100);
$c = cpu($redis);
$invalidate('g.0');
$fig['cpu_invalidate_small_s'] = cpu($redis) - $c;
$fig['small_tag_entries'] = $small;
$fig['hits_after_small'] = $read(array_values(array_filter(range(0, min($n, 10 * BATCH) - 1),
    fn ($i) => $i % 100 === 0)));

// Those entries again, then the tag every entry shares, with a second connection pinging.
$save(array_values(array_filter(range(0, $n - 1), fn ($i) => $i % 100 === 0)), LIFETIME);
$stop = start_pinger($port);
$c = cpu($redis);
$t = hrtime(true);
$invalidate('all');
$fig['wall_invalidate_all_ms'] = (hrtime(true) - $t) / 1e6;
$fig['cpu_invalidate_all_s'] = cpu($redis) - $c;
$fig['ping_max_ms'] = $stop();
$hits = 0;
foreach ($batches as $ids) {
    $hits += $read($ids);
}
$fig['hits_after_all'] = $hits;
$fig['keys_left_after_invalidations'] = $redis->dbSize();

// TTL: N entries that live 1 s, then every key the server still holds once they expired (a
// SCAN over the keyspace removes the expired keys it meets).
$redis->flushAll();
foreach ($batches as $ids) {
    $save($ids, 1);
}
sleep(2);
$it = null;
$redis->setOption(Redis::OPT_SCAN, Redis::SCAN_RETRY);
while ($redis->scan($it, '*', 1000) !== false) {
}
$fig['keys_left_after_ttl'] = $redis->dbSize();

echo json_encode($fig), "\n";
