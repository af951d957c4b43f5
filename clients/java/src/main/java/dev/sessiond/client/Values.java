package dev.sessiond.client;

import com.google.protobuf.ListValue;
import com.google.protobuf.NullValue;
import com.google.protobuf.Struct;
import com.google.protobuf.Value;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Storage values between Java and google.protobuf.Value: {@code null},
 * {@link Boolean}, {@link Number} (read back as {@link Double}), {@link
 * String}, {@link List} and {@link Map} with String keys, nested freely.
 */
public final class Values {
  private Values() {}

  /** A Java value as a google.protobuf.Value. */
  public static Value toValue(Object value) {
    if (value == null) {
      return Value.newBuilder().setNullValue(NullValue.NULL_VALUE).build();
    } else if (value instanceof Boolean b) {
      return Value.newBuilder().setBoolValue(b).build();
    } else if (value instanceof Number n) {
      return Value.newBuilder().setNumberValue(n.doubleValue()).build();
    } else if (value instanceof CharSequence s) {
      return Value.newBuilder().setStringValue(s.toString()).build();
    } else if (value instanceof Map<?, ?> map) {
      Struct.Builder struct = Struct.newBuilder();
      map.forEach((k, v) -> struct.putFields(String.valueOf(k), toValue(v)));
      return Value.newBuilder().setStructValue(struct).build();
    } else if (value instanceof Iterable<?> list) {
      ListValue.Builder values = ListValue.newBuilder();
      list.forEach(v -> values.addValues(toValue(v)));
      return Value.newBuilder().setListValue(values).build();
    }
    throw new IllegalArgumentException("a storage value cannot be a " + value.getClass().getName());
  }

  /** A google.protobuf.Value as a Java value (mutable maps and lists). */
  public static Object fromValue(Value value) {
    return switch (value.getKindCase()) {
      case BOOL_VALUE -> value.getBoolValue();
      case NUMBER_VALUE -> value.getNumberValue();
      case STRING_VALUE -> value.getStringValue();
      case STRUCT_VALUE -> fromValues(value.getStructValue().getFieldsMap());
      case LIST_VALUE -> {
        List<Object> list = new ArrayList<>();
        value.getListValue().getValuesList().forEach(v -> list.add(fromValue(v)));
        yield list;
      }
      case NULL_VALUE, KIND_NOT_SET -> null;
    };
  }

  static Map<String, Value> toValues(Map<String, ?> values) {
    Map<String, Value> converted = new LinkedHashMap<>();
    values.forEach((k, v) -> converted.put(k, toValue(v)));
    return converted;
  }

  static Map<String, Object> fromValues(Map<String, Value> values) {
    Map<String, Object> converted = new LinkedHashMap<>();
    values.forEach((k, v) -> converted.put(k, fromValue(v)));
    return converted;
  }

  /** A deep copy, in the shapes fromValue answers (for comparing). */
  static Object normalise(Object value) {
    return fromValue(toValue(value));
  }
}
