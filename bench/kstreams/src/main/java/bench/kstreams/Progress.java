package bench.kstreams;

import java.util.Arrays;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * What the stream thread has counted so far, for the main thread: when the first record came, when the last,
 * and whether the expected count is in. Totals come from the stores' values as they are written, so a task that
 * is restored from its changelog and reprocesses records is counted from its store again, never twice.
 */
public final class Progress {

    private final long expected;
    private final CountDownLatch done = new CountDownLatch(1);
    private volatile long firstNanos;
    private volatile long lastActivityNanos;
    /** per-partition mode: the last value written to each partition's store */
    private Totals[] partitions = new Totals[0];
    private Totals total = Totals.ZERO;
    private Totals finalTotals;
    private long doneNanos;

    public Progress(long expected) {
        this.expected = expected;
    }

    /** A record came in: the first one prints {@code FIRST <nanos>} at once. */
    public void sawRecord() {
        long now = System.nanoTime();
        lastActivityNanos = now;
        if (firstNanos == 0) {
            firstNanos = now;
            System.out.println("FIRST " + now);
            System.out.flush();
        }
    }

    /** per-partition mode: the store of {@code partition} now holds {@code value}. */
    public synchronized void partition(int partition, Totals value) {
        if (partition >= partitions.length) {
            partitions = Arrays.copyOf(partitions, partition + 1);
        }
        Totals before = partitions[partition] == null ? Totals.ZERO : partitions[partition];
        partitions[partition] = value;
        total = new Totals(total.orders() + value.orders() - before.orders(),
                total.micros() + value.micros() - before.micros(), total.invalid() + value.invalid() - before.invalid());
        check();
    }

    /** global mode: the one aggregate now holds {@code value}. */
    public synchronized void global(Totals value) {
        lastActivityNanos = System.nanoTime();
        total = value;
        check();
    }

    private void check() {
        if (finalTotals == null && total.records() >= expected) {
            doneNanos = System.nanoTime();
            finalTotals = total;
            done.countDown();
        }
    }

    public boolean awaitDone(long millis) throws InterruptedException {
        return done.await(millis, TimeUnit.MILLISECONDS);
    }

    public synchronized Totals finalTotals() {
        return finalTotals;
    }

    public synchronized Totals current() {
        return total;
    }

    public synchronized long doneNanos() {
        return doneNanos;
    }

    public long lastActivityNanos() {
        return lastActivityNanos;
    }

    public long firstNanos() {
        return firstNanos;
    }
}
