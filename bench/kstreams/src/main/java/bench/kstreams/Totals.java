package bench.kstreams;

import java.nio.ByteBuffer;

import org.apache.kafka.common.serialization.Deserializer;
import org.apache.kafka.common.serialization.Serde;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.Serializer;

/** What both modes keep in their store: valid orders, their price sum in integer micros, invalid records. */
public record Totals(long orders, long micros, long invalid) {

    public static final Totals ZERO = new Totals(0, 0, 0);

    /** The totals with one more record: its price in micros, or {@link OrderDecoder#INVALID}. */
    public Totals plus(long priceMicros) {
        if (priceMicros == OrderDecoder.INVALID) {
            return new Totals(orders, micros, invalid + 1);
        }
        return new Totals(orders + 1, Math.addExact(micros, priceMicros), invalid);
    }

    /** Records counted, valid or not. */
    public long records() {
        return orders + invalid;
    }

    /** 24 bytes: orders, micros, invalid, big-endian. */
    public static final Serde<Totals> SERDE = Serdes.serdeFrom(
            (Serializer<Totals>) (topic, totals) -> totals == null ? null
                    : ByteBuffer.allocate(24).putLong(totals.orders).putLong(totals.micros).putLong(totals.invalid)
                            .array(),
            (Deserializer<Totals>) (topic, bytes) -> {
                if (bytes == null) {
                    return null;
                }
                ByteBuffer buffer = ByteBuffer.wrap(bytes);
                return new Totals(buffer.getLong(), buffer.getLong(), buffer.getLong());
            });
}
