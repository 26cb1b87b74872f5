package bench.kstreams;

import java.io.IOException;
import java.math.BigDecimal;
import java.math.MathContext;
import java.math.RoundingMode;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.DecoderFactory;

/**
 * Confluent-framed Avro orders to their price in integer micros, with the app's own rules.
 *
 * <p>Byte 0 is the magic 0, bytes 1-4 the big-endian schema id, then the Avro binary body. The writer schema is
 * fetched once per id from the registry ({@code GET {registry}/schemas/ids/{id}}) and the body decoded with it by a
 * {@link GenericDatumReader} into a reused record through a reused {@link BinaryDecoder}, as the ceiling decodes
 * with fastavro and the writer schema alone.
 *
 * <p>{@link #priceMicros} is {@code orders.domain.order.validate(record).price_micros}: the same checks (an invalid
 * order is {@link #INVALID}) and the same arithmetic, bit for bit: Python's
 * {@code int((Decimal(price) * 1_000_000).to_integral_value())} converts the double exactly, multiplies in the
 * default decimal context (28 significant digits, half even) and rounds to an integer half even.
 *
 * <p>One instance per task: the reused decoder and record are not shared between threads.
 */
public final class OrderDecoder {

    /** What {@link #priceMicros} returns for an order that {@code validate} refuses. */
    public static final long INVALID = -1;

    static final int MAX_ORDER_ID_CHARS = 200;
    static final int MAX_PRODUCT_CHARS = 1_000;
    private static final BigDecimal MICROS_PER_UNIT = BigDecimal.valueOf(1_000_000);
    /** Python's default decimal context. */
    private static final MathContext PYTHON_DECIMAL = new MathContext(28, RoundingMode.HALF_EVEN);

    private static final Map<Integer, Schema> SCHEMAS = new ConcurrentHashMap<>();
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    private final String registryUrl;
    private final String authorization;
    private final Map<Integer, Reader> readers = new HashMap<>();
    private BinaryDecoder decoder;
    private int lastId = -1;
    private Reader last;

    /** @param basicAuth "user:password" for the registry, or null */
    public OrderDecoder(String registryUrl, String basicAuth) {
        this.registryUrl = registryUrl.replaceAll("/+$", "");
        this.authorization = basicAuth == null || basicAuth.isEmpty() ? null
                : "Basic " + Base64.getEncoder().encodeToString(basicAuth.getBytes(StandardCharsets.UTF_8));
    }

    /** A writer schema's reader, the positions of the fields validate reads, and the record it reuses. */
    private static final class Reader {
        final GenericDatumReader<GenericRecord> datumReader;
        final int orderId;
        final int product;
        final int price;
        GenericRecord reuse;

        Reader(Schema schema) {
            if (schema.getType() != Schema.Type.RECORD) {
                throw new IllegalStateException("writer schema is a " + schema.getType() + ", not a record");
            }
            datumReader = new GenericDatumReader<>(schema);
            orderId = position(schema, "orderId");
            product = position(schema, "product");
            price = position(schema, "price");
        }

        private static int position(Schema schema, String name) {
            Schema.Field field = schema.getField(name);
            return field == null ? -1 : field.pos();
        }
    }

    /** The order's price in micros, or {@link #INVALID}; throws on a value that is not Confluent-framed Avro. */
    public long priceMicros(byte[] value) throws IOException {
        if (value == null || value.length < 5 || value[0] != 0) {
            throw new IOException("not a Confluent-framed Avro value (magic byte 0, 4-byte schema id): "
                    + (value == null ? "null" : value.length + " bytes"));
        }
        int id = ((value[1] & 0xff) << 24) | ((value[2] & 0xff) << 16) | ((value[3] & 0xff) << 8) | (value[4] & 0xff);
        Reader reader = id == lastId ? last : readers.computeIfAbsent(id, key -> new Reader(writerSchema(key)));
        lastId = id;
        last = reader;
        decoder = DecoderFactory.get().binaryDecoder(value, 5, value.length - 5, decoder);
        GenericRecord record = reader.datumReader.read(reader.reuse, decoder);
        reader.reuse = record;
        return validatedMicros(reader, record);
    }

    private static long validatedMicros(Reader reader, GenericRecord record) {
        Object orderId = reader.orderId < 0 ? null : record.get(reader.orderId);
        if (!(orderId instanceof CharSequence) || isBlank(orderId.toString())) {
            return INVALID;
        }
        String id = orderId.toString();
        if (id.codePointCount(0, id.length()) > MAX_ORDER_ID_CHARS) {
            return INVALID;
        }
        if (reader.product >= 0) {  // absent: Python's record.get("product", "")
            Object product = record.get(reader.product);
            if (!(product instanceof CharSequence)) {
                return INVALID;
            }
            String name = product.toString();
            if (name.codePointCount(0, name.length()) > MAX_PRODUCT_CHARS) {
                return INVALID;
            }
        }
        Object price = reader.price < 0 ? null : record.get(reader.price);
        if (!(price instanceof Integer || price instanceof Long || price instanceof Float || price instanceof Double)) {
            return INVALID;
        }
        // float(price): exact from float and int, nearest (ties to even) from a long beyond 2^53, as in Python.
        double value = ((Number) price).doubleValue();
        if (!Double.isFinite(value) || value < 0) {
            return INVALID;
        }
        return micros(value);
    }

    /** {@code int((Decimal(price) * 1_000_000).to_integral_value())}, Python's arithmetic exactly. */
    static long micros(double price) {
        return new BigDecimal(price).multiply(MICROS_PER_UNIT).round(PYTHON_DECIMAL)
                .setScale(0, RoundingMode.HALF_EVEN).longValueExact();
    }

    /** Python's {@code not s.strip()}: empty or only characters for which {@code str.isspace()} is true. */
    static boolean isBlank(String text) {
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            // Java's isWhitespace leaves out the no-break spaces (Zs) and U+0085, which Python counts as space.
            if (!(Character.isWhitespace(cp) || Character.isSpaceChar(cp) || cp == 0x85)) {
                return false;
            }
            i += Character.charCount(cp);
        }
        return true;
    }

    private Schema writerSchema(int id) {
        return SCHEMAS.computeIfAbsent(id, this::fetchSchema);
    }

    private Schema fetchSchema(int id) {
        String url = registryUrl + "/schemas/ids/" + id;
        HttpRequest.Builder request = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).GET();
        if (authorization != null) {
            request.header("Authorization", authorization);
        }
        HttpResponse<String> response;
        try {
            response = HTTP.send(request.build(), HttpResponse.BodyHandlers.ofString());
        } catch (IOException exc) {
            throw new IllegalStateException("schema registry unreachable at " + url + ": " + exc, exc);
        } catch (InterruptedException exc) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted while fetching " + url, exc);
        }
        String body = response.body();
        if (response.statusCode() != 200) {
            throw new IllegalStateException("schema registry answered HTTP " + response.statusCode() + " for " + url
                    + ": " + body.substring(0, Math.min(body.length(), 300)));
        }
        try {
            JsonNode schema = JSON.readTree(body).get("schema");
            if (schema == null || !schema.isTextual()) {
                throw new IllegalStateException("no \"schema\" string in the registry's answer for " + url);
            }
            return new Schema.Parser().parse(schema.asText());
        } catch (IOException exc) {
            throw new IllegalStateException("the registry's answer for " + url + " is not JSON: " + exc, exc);
        }
    }
}
