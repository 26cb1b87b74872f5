package bench.kstreams;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.processor.api.FixedKeyProcessor;
import org.apache.kafka.streams.processor.api.FixedKeyProcessorContext;
import org.apache.kafka.streams.processor.api.FixedKeyRecord;
import org.apache.kafka.streams.processor.api.Processor;
import org.apache.kafka.streams.processor.api.ProcessorContext;
import org.apache.kafka.streams.processor.api.Record;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * The Kafka Streams yardstick of the benchmarks: drain the preloaded orders topic, count the orders and sum their
 * prices in integer micros, exactly once ({@code exactly_once_v2}, one stream thread).
 *
 * <p>Modes: {@code per-partition} keeps a count and sum per source partition in a store of a processor (Processor
 * API; no repartition topic; the store's changelog is Streams' own). {@code global} keys every order to one
 * constant key, which sends it through a repartition topic, and aggregates into one count and sum.
 *
 * <p>Stdout, for the bench: {@code FIRST <nanos>} at the first record, {@code DONE <orders> <total_micros>
 * <nanos_of_last> <invalid>} when the expected number of records is counted ({@link System#nanoTime()}, one
 * clock); then it closes Kafka Streams (leaving the group) and exits 0. Failures go to stderr, exit nonzero.
 */
public final class OrdersStreams {

    static final String PARTITION_STORE = "partition-totals";
    static final String GLOBAL_STORE = "global-totals";
    static final String REPARTITION = "orders-by-constant";
    static final String CONSTANT_KEY = "all";
    static final Duration CLOSE_TIMEOUT = Duration.ofSeconds(60);
    /** "user:password" for the registry, from the environment so it stays off the command line */
    static final String REGISTRY_AUTH_ENV = "ORDERS_KSTREAMS_REGISTRY_AUTH";

    private static final String USAGE = String.join("\n",
            "usage: java -jar orders-kstreams.jar --bootstrap-servers HOST:PORT --topic TOPIC --application-id ID",
            "       --mode per-partition|global --expected N --registry URL --state-dir DIR [--idle-timeout-s 60]");

    private OrdersStreams() {
    }

    public static void main(String[] argv) {
        Map<String, String> args;
        try {
            args = parse(argv);
        } catch (IllegalArgumentException exc) {
            System.err.println("orders-kstreams: " + exc.getMessage() + "\n" + USAGE);
            System.exit(2);
            return;
        }
        System.exit(run(args));
    }

    static Map<String, String> parse(String[] argv) {
        List<String> required = List.of("--bootstrap-servers", "--topic", "--application-id", "--mode", "--expected",
                "--registry", "--state-dir");
        Map<String, String> args = new HashMap<>(Map.of("--idle-timeout-s", "60"));
        for (int i = 0; i < argv.length; i += 2) {
            if (!(required.contains(argv[i]) || argv[i].equals("--idle-timeout-s")) || i + 1 >= argv.length) {
                throw new IllegalArgumentException("unknown option or missing value: " + argv[i]);
            }
            args.put(argv[i], argv[i + 1]);
        }
        for (String name : required) {
            if (!args.containsKey(name)) {
                throw new IllegalArgumentException("missing " + name);
            }
        }
        if (!List.of("per-partition", "global").contains(args.get("--mode"))) {
            throw new IllegalArgumentException("--mode is per-partition or global, not " + args.get("--mode"));
        }
        if (Long.parseLong(args.get("--expected")) < 1 || Long.parseLong(args.get("--idle-timeout-s")) < 1) {
            throw new IllegalArgumentException("--expected and --idle-timeout-s must be at least 1");
        }
        return args;
    }

    static int run(Map<String, String> args) {
        long expected = Long.parseLong(args.get("--expected"));
        long idleNanos = Duration.ofSeconds(Long.parseLong(args.get("--idle-timeout-s"))).toNanos();
        Progress progress = new Progress(expected);
        String registry = args.get("--registry");
        String auth = System.getenv(REGISTRY_AUTH_ENV);
        Topology topology = args.get("--mode").equals("global")
                ? globalTopology(args.get("--topic"), registry, auth, progress)
                : perPartitionTopology(args.get("--topic"), registry, auth, progress);

        Properties props = new Properties();
        props.put(StreamsConfig.APPLICATION_ID_CONFIG, args.get("--application-id"));
        props.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.get("--bootstrap-servers"));
        props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
        props.put(StreamsConfig.STATE_DIR_CONFIG, args.get("--state-dir"));
        // commit.interval.ms: EOS's default, 100 ms. A new group reads from the beginning (Streams' default too).
        props.put(StreamsConfig.consumerPrefix("auto.offset.reset"), "earliest");
        // Static membership, only so that close(leaveGroup) can take the member out of the group (it does so for
        // static members only; a dynamic Streams member stays until its session times out, 45 s, and the group
        // cannot be deleted until then).
        props.put(StreamsConfig.consumerPrefix("group.instance.id"), args.get("--application-id"));

        AtomicReference<Throwable> failure = new AtomicReference<>();
        KafkaStreams streams = new KafkaStreams(topology, props);
        streams.setUncaughtExceptionHandler(exc -> {
            failure.compareAndSet(null, exc);
            return StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
        });
        Thread hook = new Thread(() -> streams.close(Duration.ofSeconds(10)), "orders-kstreams-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);

        long started = System.nanoTime();
        String problem = null;
        try {
            streams.start();
            while (!progress.awaitDone(200)) {
                if (failure.get() != null) {
                    problem = "Kafka Streams failed: " + describe(failure.get());
                    break;
                }
                KafkaStreams.State state = streams.state();
                if (state == KafkaStreams.State.ERROR || state == KafkaStreams.State.PENDING_ERROR
                        || state == KafkaStreams.State.NOT_RUNNING || state == KafkaStreams.State.PENDING_SHUTDOWN) {
                    problem = "Kafka Streams stopped (" + state + ")";
                    break;
                }
                long quietSince = Math.max(started, progress.lastActivityNanos());
                if (System.nanoTime() - quietSince > idleNanos) {
                    Totals now = progress.current();
                    problem = String.format("no record for %s s (%s), %d of %d records counted, state %s",
                            args.get("--idle-timeout-s"), progress.firstNanos() == 0 ? "none at all" : "since the last",
                            now.records(), expected, state);
                    break;
                }
            }
        } catch (InterruptedException exc) {
            Thread.currentThread().interrupt();
            problem = "interrupted";
        } catch (RuntimeException exc) {
            problem = "Kafka Streams did not start: " + describe(exc);
        }

        if (problem == null) {
            Totals totals = progress.finalTotals();
            System.out.println("DONE " + totals.orders() + " " + totals.micros() + " " + progress.doneNanos() + " "
                    + totals.invalid());
            System.out.flush();
        } else {
            System.err.println("orders-kstreams: " + problem);
        }
        // Leave the group (see group.instance.id above): the bench deletes the group right after.
        boolean closed = streams.close(new KafkaStreams.CloseOptions().leaveGroup(true).timeout(CLOSE_TIMEOUT));
        Runtime.getRuntime().removeShutdownHook(hook);
        if (!closed) {
            System.err.println("orders-kstreams: Kafka Streams did not close within " + CLOSE_TIMEOUT.toSeconds()
                    + " s (state " + streams.state() + ")");
            return 3;
        }
        if (problem == null && failure.get() != null) {
            System.err.println("orders-kstreams: Kafka Streams failed while closing: " + describe(failure.get()));
            return 1;
        }
        return problem == null ? 0 : 1;
    }

    private static String describe(Throwable exc) {
        StringBuilder text = new StringBuilder(exc.toString());
        for (Throwable cause = exc.getCause(); cause != null && cause != cause.getCause(); cause = cause.getCause()) {
            text.append("; caused by ").append(cause);
        }
        return text.toString();
    }

    /** A count and sum per source partition, in a store updated per record: no repartition topic. */
    static Topology perPartitionTopology(String topic, String registry, String auth, Progress progress) {
        StreamsBuilder builder = new StreamsBuilder();
        // Like the DSL's stores: RocksDB, cached (the changelog gets the latest value per commit), changelogged.
        builder.addStateStore(Stores.keyValueStoreBuilder(Stores.persistentKeyValueStore(PARTITION_STORE),
                Serdes.Integer(), Totals.SERDE).withCachingEnabled());
        builder.stream(topic, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .process(() -> new PartitionTotals(registry, auth, progress), PARTITION_STORE);
        return builder.build();
    }

    /** One count and sum for all partitions: every order to one key, through a repartition topic, aggregated. */
    static Topology globalTopology(String topic, String registry, String auth, Progress progress) {
        StreamsBuilder builder = new StreamsBuilder();
        KStream<byte[], Long> micros = builder.stream(topic, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
                .processValues(() -> new Decode(registry, auth, progress));
        micros.groupBy((key, value) -> CONSTANT_KEY, Grouped.with(REPARTITION, Serdes.String(), Serdes.Long()))
                .aggregate(() -> Totals.ZERO, (key, value, totals) -> {
                    Totals next = totals.plus(value);
                    progress.global(next);
                    return next;
                }, Materialized.<String, Totals, KeyValueStore<org.apache.kafka.common.utils.Bytes, byte[]>>as(
                        GLOBAL_STORE).withKeySerde(Serdes.String()).withValueSerde(Totals.SERDE));
        return builder.build();
    }

    /** per-partition mode: decode, then add the order to its partition's totals in the store. */
    static final class PartitionTotals implements Processor<byte[], byte[], Void, Void> {
        private final OrderDecoder decoder;
        private final Progress progress;
        private ProcessorContext<Void, Void> context;
        private KeyValueStore<Integer, Totals> store;

        PartitionTotals(String registry, String auth, Progress progress) {
            this.decoder = new OrderDecoder(registry, auth);
            this.progress = progress;
        }

        @Override
        public void init(ProcessorContext<Void, Void> context) {
            this.context = context;
            this.store = context.getStateStore(PARTITION_STORE);
        }

        @Override
        public void process(Record<byte[], byte[]> record) {
            progress.sawRecord();
            long micros = decode(decoder, record.value());
            int partition = context.recordMetadata().orElseThrow().partition();
            Totals before = store.get(partition);
            Totals after = (before == null ? Totals.ZERO : before).plus(micros);
            store.put(partition, after);
            progress.partition(partition, after);
        }
    }

    /** global mode: each order's value becomes its price in micros (or OrderDecoder.INVALID). */
    static final class Decode implements FixedKeyProcessor<byte[], byte[], Long> {
        private final OrderDecoder decoder;
        private final Progress progress;
        private FixedKeyProcessorContext<byte[], Long> context;

        Decode(String registry, String auth, Progress progress) {
            this.decoder = new OrderDecoder(registry, auth);
            this.progress = progress;
        }

        @Override
        public void init(FixedKeyProcessorContext<byte[], Long> context) {
            this.context = context;
        }

        @Override
        public void process(FixedKeyRecord<byte[], byte[]> record) {
            progress.sawRecord();
            context.forward(record.withValue(decode(decoder, record.value())));
        }
    }

    private static long decode(OrderDecoder decoder, byte[] value) {
        try {
            return decoder.priceMicros(value);
        } catch (IOException exc) {
            throw new UncheckedIOException(exc);
        }
    }
}
